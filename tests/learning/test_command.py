"""`ranking-gateway learn` end to end on synthetic logs, the gateway's deploy API faked at the
HTTP client (`httpx.get`/`httpx.post`, what `learn` and `deploy`'s client call)."""

import json

from ranking_gateway.cli import main
from ranking_gateway.personalization.scorer import DEFAULT_WEIGHTS, PersonalScorer
from tests.learning.conftest import write_log


def learn(events, workdir, *extra):
    return main(["learn", "--events", str(events), "--workdir", str(workdir), "--url", "http://gw:8000",
                 "--settle", "0", *extra])


def state(workdir):
    return json.loads((workdir / "state.json").read_text())


def test_rounds_deploy_then_refuse_noise_then_skip_and_the_cursor_moves(tmp_path, fake_gateway, capsys):
    events, work = tmp_path / "events", tmp_path / "work"
    write_log(events / "events-000001.jsonl", 1500, clicks="profile", start_ts=1000.0)

    # round 1: clicks follow the profile; compared with the defaults the gateway serves (no file)
    assert learn(events, work) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("learn round 1: deployed weights-v0001")
    weights = work / "weights" / "weights-v0001.json"
    assert fake_gateway.deploys == [{"rollback": False, "warm": 0, "personalizer_weights": str(weights)}]
    assert PersonalScorer.load(weights).weights[2] > 5
    report = json.loads((work / "reports" / "round-0001.json").read_text())
    assert report["verdict"] == "deploy" and report["deploy"]["status"] == 0
    assert report["deploy"]["gateway"]["to"]["personalizer_weights"] == str(weights)
    assert report["weights"]["serving"]["profile_sim"] == DEFAULT_WEIGHTS[2]
    assert (work / "reports" / "round-0001.png").exists()
    s = state(work)
    assert s["cursor"]["ts"] == 2499.0 and s["versions"][0]["weights"] == "weights/weights-v0001.json"

    # round 2: nothing new since the cursor: skipped, the cursor stays
    assert learn(events, work) == 0
    assert "learn round 2: skipped: 0 new clicks joined to 0 impressions" in capsys.readouterr().out
    assert len(fake_gateway.deploys) == 1 and state(work)["cursor"]["ts"] == 2499.0

    # round 3: a new segment of random clicks: only it is read, and the candidate is refused
    write_log(events / "events-000002.jsonl", 1500, clicks="noise", start_ts=3000.0, prefix="n", seed=1)
    assert learn(events, work) == 0
    line = capsys.readouterr().out
    assert "learn round 3: refused (failed signal), the gateway keeps its weights" in line
    report = json.loads((work / "reports" / "round-0003.json").read_text())
    assert report["counts"]["impressions"] == 1500 and report["window"]["cursor_from"] == 2499.0
    assert report["weights"]["serving_source"] == str(weights)  # compared with what the gateway serves now
    assert report["deploy"] is None and len(fake_gateway.deploys) == 1 and fake_gateway.current == str(weights)
    s = state(work)
    assert s["cursor"]["ts"] == 4499.0 and [r["verdict"] for r in s["runs"]] == ["deploy", "skipped", "refused"]


def test_dry_run_deploys_nothing_and_leaves_the_state(tmp_path, fake_gateway, capsys):
    events, work = tmp_path / "events", tmp_path / "work"
    write_log(events / "events-000001.jsonl", 1000)
    assert learn(events, work, "--dry-run") == 0
    assert capsys.readouterr().out.startswith("learn dry run: would deploy")
    assert fake_gateway.deploys == [] and not (work / "state.json").exists()
    assert json.loads((work / "reports" / "dry-run.json").read_text())["config"]["dry_run"] is True


def test_a_deploy_the_gateway_refuses_exits_1_and_keeps_the_cursor(tmp_path, fake_gateway, capsys):
    events, work = tmp_path / "events", tmp_path / "work"
    write_log(events / "events-000001.jsonl", 1000)
    fake_gateway.refuse = (422, "invalid_artifacts")
    assert learn(events, work) == 1
    err = capsys.readouterr().err
    assert "deploy refused (422 invalid_artifacts)" in err and "the cursor stays" in err
    s = state(work)
    assert s["cursor"]["ts"] is None and s["versions"] == [] and s["runs"][0]["verdict"] == "deploy_failed"
    fake_gateway.refuse = None
    assert learn(events, work) == 0  # the next round retries the same window
    assert "learn round 2: deployed weights-v0001" in capsys.readouterr().out


def test_serving_weights_from_a_file_and_errors_are_one_line(tmp_path, capsys):
    events, work = tmp_path / "events", tmp_path / "work"
    write_log(events / "events-000001.jsonl", 200)
    serving = tmp_path / "serving.json"
    serving.write_text(json.dumps(PersonalScorer().to_json()))
    # no gateway needed for a dry run against a file
    assert learn(events, work, "--dry-run", "--serving-weights", str(serving), "--min-clicks", "100000") == 0
    assert "would skip" in capsys.readouterr().out
    assert learn(tmp_path / "missing", work, "--serving-weights", str(serving)) == 2
    assert learn(events, work, "--serving-weights", str(serving), "--margin", "-1") == 2
    assert learn(events, work, "--url", "http://127.0.0.1:9") == 2  # nothing listens there
    err = capsys.readouterr().err
    assert "no such event log" in err and "margin" in err and "could not reach the gateway" in err
