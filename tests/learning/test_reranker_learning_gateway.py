"""`learn --judged` against a real `ranking-gateway serve` (embedded Triton): clicks logged by the
gateway itself train the reranker -- a late-interaction build's query side, or a whole
cross-encoder -- the candidate goes live through the swap as new artifacts sharing the served
build's index (and token store), searches keep answering, and `deploy --rollback` brings the
served build back."""

import json
import random
import shutil

import pytest

from ranking_gateway.cli import main
from ranking_gateway.core.artifacts import Manifest
from ranking_gateway.core.corpus import read_corpus
from tests.conftest import serve_process

pytestmark = pytest.mark.slow


def _judged_collection(root, corpus, docs, rng):
    """A BEIR directory judging each document relevant to a query cut from its own text."""
    root.mkdir()
    shutil.copy(corpus, root / "corpus.jsonl")
    (root / "qrels").mkdir()
    with (root / "queries.jsonl").open("w") as queries, (root / "qrels" / "test.tsv").open("w") as qrels:
        qrels.write("query-id\tcorpus-id\tscore\n")
        for d in docs:
            words = [w.strip(".,").lower() for w in d.text.split() if len(w) > 3]
            queries.write(json.dumps({"_id": f"q-{d.id}", "text": " ".join(rng.sample(words, 3))}) + "\n")
            qrels.write(f"q-{d.id}\t{d.id}\t1\n")
    return root


def _users_click_what_they_searched_for(gw, docs, rng, searches: int = 160) -> int:
    """Users search words of a document and click it where they see it; the clicks logged."""
    clicks = 0
    for r in range(searches):
        target = docs[r % len(docs)]
        words = [w.strip(".,").lower() for w in target.text.split() if len(w) > 3]
        body = gw.post("/v1/search", json={"query": " ".join(rng.sample(words, 2)), "k": 10,
                                           "user_id": f"user-{r}"}).json()
        shown = [hit["id"] for hit in body["results"]]
        if target.id in shown and len(shown) > 1:
            clicks += 1
            assert gw.post("/v1/events", json={"user_id": f"user-{r}", "doc_id": target.id, "type": "click",
                                               "request_id": body["request_id"],
                                               "position": shown.index(target.id) + 1}).status_code == 202
    return clicks


def _learn_deploy_and_roll_back(build, tmp_path, capsys, *extra: str, searches: int = 160) -> tuple[Manifest, Manifest]:
    """One `learn` round on the clicks of a served `build`: deployed, then rolled back; the
    served and the learnt manifests."""
    rng = random.Random(5)
    docs = read_corpus(build.documents)
    judged = _judged_collection(tmp_path / "judged", build.documents, docs, rng)
    events, work = tmp_path / "events", tmp_path / "work"
    with serve_process(build, tmp_path / "gw.log", "--event-log", str(events)) as gw:
        before = gw.get("/v1/admin/deploy").json()["current"]
        version_before = gw.get("/readyz").json()["version"]
        assert _users_click_what_they_searched_for(gw, docs, rng, searches) >= 60
        argv = ["learn", "--events", str(events), "--workdir", str(work), "--url", str(gw.base_url), "--settle", "0",
                "--no-personalizer", "--judged", str(judged), "--min-clicks", "30", "--ndcg-margin", "0.05", *extra]
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "learn round 1: deployed reranker v0001" in out, out
        new = work / "artifacts" / "v0001"
        status = gw.get("/v1/admin/deploy").json()
        assert status["current"]["artifacts"] == str(new) and status["previous"]["artifacts"] == before["artifacts"]
        ready = gw.get("/readyz").json()
        assert ready["ready"] and ready["version"] != version_before  # every cache key changed with it
        old_manifest, new_manifest = Manifest.read(build.root), Manifest.read(new)
        assert new_manifest.index_version == old_manifest.index_version
        assert new_manifest.reranker.sha256 != old_manifest.reranker.sha256
        assert new_manifest.reranker.source == str(work / "rerankers" / "v0001")
        report = json.loads((work / "reports" / "round-0001.json").read_text())
        assert report["reranker"]["verdict"] == "deploy" and report["deploy"]["artifacts"] == str(new)
        assert (work / "reports" / "round-0001-reranker.png").is_file()
        body = gw.post("/v1/search", json={"query": "volcano eruptions", "k": 3}).json()
        assert len(body["results"]) == 3 and body["reranked"] and not body["degraded"]

        assert main(["deploy", "--rollback", "--url", str(gw.base_url)]) == 0
        assert gw.get("/v1/admin/deploy").json()["current"]["artifacts"] == before["artifacts"]
        assert gw.get("/readyz").json()["version"] == version_before
    return old_manifest, new_manifest


def test_learn_retrains_the_reranker_from_gateway_clicks_swaps_it_live_and_rolls_back(late_artifacts, tmp_path, capsys):
    # the trained late-interaction reranker already ranks these clicks near the top (held-out IPS
    # mean rank 1.07-1.39 of 10 in two runs): on ~32 held-out clicks one click moving a place
    # changes that by more than the default 1 % margin, and CI once refused the round on it (1.50
    # against 1.39). The gate's decisions are test_reranker_round's; this test is the loop around
    # them, so it allows 50 % (the same margin makes the signal check want half a random order's 5.5)
    old, new = _learn_deploy_and_roll_back(late_artifacts, tmp_path, capsys, "--margin", "0.5")
    assert new.token_store == old.token_store  # the document side stays: only the query side is new


def test_learn_retrains_a_served_cross_encoder_and_swaps_it_live(artifacts, tmp_path, capsys):
    # the session's cross-encoder is untrained: its top 10 holds the searched document less often
    # (more searches for as many clicks), and a larger step lets one round on them learn
    old, new = _learn_deploy_and_roll_back(artifacts, tmp_path, capsys, "--reranker-lr", "1e-4",
                                           "--reranker-epochs", "2", searches=400)
    assert new.reranker.kind == old.reranker.kind == "cross-encoder"
    assert new.reranker.max_length == old.reranker.max_length and new.encoder == old.encoder
    assert new.reranker.onnx_sha256 != old.reranker.onnx_sha256
