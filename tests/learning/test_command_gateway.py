"""`learn` against a real `ranking-gateway serve` process: the candidate goes through the live
swap, `GET /v1/admin/deploy` shows it, and `deploy --rollback` brings the weights served before."""

import json

import pytest

from ranking_gateway.cli import main
from tests.conftest import serve_process
from tests.learning.conftest import write_log

pytestmark = pytest.mark.slow


def test_learn_deploys_to_a_running_gateway_and_rollback_restores(artifacts, triton, tmp_path, capsys):
    events, work = tmp_path / "clicks", tmp_path / "work"
    write_log(events / "events-000001.jsonl", 1500)
    with serve_process(artifacts, tmp_path / "gw.log", "--event-log", str(tmp_path / "gw-events"),
                       triton_url=triton.grpc_url) as gw:
        before = gw.get("/v1/admin/deploy").json()["current"]
        assert main(["learn", "--events", str(events), "--workdir", str(work), "--url", str(gw.base_url),
                     "--settle", "0"]) == 0
        assert "learn round 1: deployed weights-v0001" in capsys.readouterr().out
        weights = work / "weights" / "weights-v0001.json"
        status = gw.get("/v1/admin/deploy").json()
        assert status["current"]["personalizer_weights"] == str(weights)
        assert status["previous"]["personalizer_weights"] == before["personalizer_weights"]
        report = json.loads((work / "reports" / "round-0001.json").read_text())
        assert report["deploy"]["gateway"]["to"]["personalizer_weights"] == str(weights)
        body = gw.post("/v1/search", json={"query": "volcano", "k": 3, "candidates": 10}).json()
        assert len(body["results"]) == 3 and not body["degraded"]

        assert main(["deploy", "--rollback", "--url", str(gw.base_url)]) == 0
        assert gw.get("/v1/admin/deploy").json()["current"]["personalizer_weights"] == before["personalizer_weights"]
