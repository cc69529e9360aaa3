"""The reranker's learning round on the test corpus's real token store: clicks that follow
relevance are deployed, random clicks and spam clicks are refused, each by the check meant for it."""

import json
import random

import pytest

from ranking_gateway.core.artifacts import ArtifactPaths, Manifest
from ranking_gateway.core.corpus import read_corpus
from ranking_gateway.core.token_store import TokenStore
from ranking_gateway.learning.click_examples import ClickExample, click_examples, ips_mean_rank, split_by_request
from ranking_gateway.learning.personalizer_round import DEPLOY, REFUSED
from ranking_gateway.learning.query_side import QuerySide, QueryTrainConfig
from ranking_gateway.learning.reranker_round import JudgedQueries, RerankerRoundConfig, run_reranker_round

SHOWN = 10
TRAIN = QueryTrainConfig(epochs=3, lr=5e-5, projection_lr=1e-3)


def _query(text: str, rng: random.Random) -> str:
    words = [w.strip(".,").lower() for w in text.split() if len(w) > 3]
    return " ".join(rng.sample(words, min(3, len(words))))


def click_log(docs, n_requests: int, clicks: str, seed: int) -> list[dict]:
    """Impressions of 10 shuffled documents for a query cut from one of them, and the clicks:
    "relevant" (that document, examined with probability 1/position), "random" (any shown
    document, 15% each) or "spam" (always the same document, shown at a random place)."""
    rng = random.Random(seed)
    records = []
    for r in range(n_requests):
        target = rng.randrange(len(docs))
        others = rng.sample([i for i in range(len(docs)) if i != target], SHOWN - 1)
        shown = others[:]
        shown.insert(rng.randrange(SHOWN), target)
        if clicks == "spam" and 0 not in shown:
            shown[rng.randrange(SHOWN)] = 0
        rid, user = f"{clicks}{r}", f"u{r}"
        records.append({"kind": "impression", "request_id": rid, "user_id": user, "ts": float(r),
                        "query": _query(docs[target].text, rng), "doc_ids": [docs[i].id for i in shown]})
        if clicks == "relevant":
            chosen = [target] if rng.random() < 1.0 / (shown.index(target) + 1) ** 0.5 else []
        elif clicks == "random":
            chosen = [i for i in shown if rng.random() < 0.15]
        else:
            chosen = [0]
        for i in chosen:
            records.append({"kind": "event", "type": "click", "user_id": user, "doc_id": docs[i].id,
                            "request_id": rid, "ts": r + 1.0, "position": shown.index(i) + 1})
    return records


@pytest.fixture(scope="module")
def setting(late_artifacts):
    paths = ArtifactPaths(late_artifacts.root)
    manifest = Manifest.read(paths.root)
    store = TokenStore.open(paths.token_store, documents=manifest.token_store.documents, dim=manifest.token_store.dim)
    docs = read_corpus(paths.documents)
    rng = random.Random(99)
    judged = JudgedQueries(
        queries={d.id: _query(d.text, rng) for d in docs},
        candidates={d.id: [(o.id, 0.0) for o in docs] for d in docs},
        qrels={d.id: {d.id: 1} for d in docs},
    )
    source = manifest.reranker.source
    return {"store": store, "docs": docs, "row_of": {d.id: i for i, d in enumerate(docs)}, "judged": judged,
            "load": lambda: QuerySide(source, store)}


def test_click_examples_join_impressions_and_weigh_positions():
    row_of = {f"d{i}": i for i in range(5)}
    records = [
        {"kind": "impression", "request_id": "r1", "user_id": "u", "query": "q", "doc_ids": ["d0", "d1", "d2", "d9"]},
        {"kind": "event", "type": "click", "user_id": "u", "doc_id": "d2", "request_id": "r1"},
        {"kind": "event", "type": "click", "user_id": "u", "doc_id": "d0", "request_id": "r1"},
        {"kind": "event", "type": "click", "user_id": "other", "doc_id": "d1", "request_id": "r1"},  # not the viewer
        {"kind": "event", "type": "click", "user_id": "u", "doc_id": "d3", "request_id": "r2"},  # no impression
        {"kind": "impression", "request_id": "r3", "user_id": "u", "doc_ids": ["d0", "d1"]},  # no query
        {"kind": "event", "type": "click", "user_id": "u", "doc_id": "d1", "request_id": "r3"},
    ]
    examples = click_examples(records, row_of)
    assert examples == [ClickExample("r1", "q", 0, (1,), 1, 0), ClickExample("r1", "q", 2, (1,), 3, 1)]
    assert [e.weight(1.0, 10.0) for e in examples] == [1.0, 3.0]
    assert examples[1].weight(2.0, 5.0) == 5.0  # clipped
    # rank 1 at weight 1 and rank 2 at weight 3: (1 + 6) / 4
    assert ips_mean_rank(examples, [1, 2], 1.0, 10.0) == pytest.approx(7 / 4)
    train, held = split_by_request(examples * 50, 0.5)
    assert {e.request_id for e in train}.isdisjoint({e.request_id for e in held})


@pytest.mark.parametrize("clicks, verdict, failed", [
    ("relevant", DEPLOY, set()),
    ("random", REFUSED, {"signal"}),
    ("spam", REFUSED, {"judged"}),
])
def test_the_gate_deploys_relevance_and_refuses_noise_and_spam(setting, clicks, verdict, failed):
    records = click_log(setting["docs"], 400, clicks, seed=1)
    config = RerankerRoundConfig(min_clicks=50, train=TRAIN)
    result = run_reranker_round(records, setting["load"], setting["row_of"], setting["judged"], config)
    report = json.dumps(result.to_json())
    assert result.verdict == verdict, report
    assert {c["name"] for c in result.checks if not c["passed"]} >= failed, report
    assert result.counts["heldout_clicks"] > 0 and result.train_losses
    if clicks == "spam":  # the held-out clicks alone would have deployed it: they are spam too
        assert {"signal", "clicks"}.isdisjoint(c["name"] for c in result.checks if not c["passed"]), report


def test_a_round_with_too_few_clicks_is_skipped(setting):
    records = click_log(setting["docs"], 20, "relevant", seed=2)
    result = run_reranker_round(records, setting["load"], setting["row_of"], setting["judged"], RerankerRoundConfig())
    assert result.verdict == "skipped" and "min-clicks 100" in result.reason
