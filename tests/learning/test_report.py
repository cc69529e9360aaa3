import json

import pytest

from ranking_gateway.learning.personalizer_round import RoundConfig, run_round
from ranking_gateway.learning.report import build_report, write_chart, write_json
from ranking_gateway.personalization.jsonl_log import read_records
from ranking_gateway.personalization.scorer import PersonalScorer
from tests.learning.conftest import write_log


def _report(tmp_path, n):
    write_log(tmp_path / "events" / "events-000001.jsonl", n)
    serving = PersonalScorer()
    result = run_round(list(read_records(tmp_path / "events")), serving, None, RoundConfig(settle_s=0.0))
    return build_report(result, round_number=1, serving=serving, serving_source="defaults", config={}, started_at=0.0)


def test_the_report_holds_both_models_per_metric_and_the_chart_is_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    report = _report(tmp_path, 1000)
    assert report["verdict"] == "deploy" and report["gate"]["passed"]
    assert set(report["metrics"]["serving"]) == set(report["metrics"]["candidate"]) == {
        "log_loss", "log_loss_calibrated", "auc", "ips_clicks_at_k"}
    assert list(report["weights"]["candidate"]) == ["primary", "retrieval", "profile_sim", "recency", "bias"]
    chart = write_chart(tmp_path / "r" / "round-0001.png", report)
    assert chart is not None and chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    write_json(tmp_path / "r" / "round-0001.json", report)
    assert json.loads((tmp_path / "r" / "round-0001.json").read_text())["round"] == 1


def test_a_skipped_round_has_no_chart(tmp_path):
    report = _report(tmp_path, 10)
    assert report["verdict"] == "skipped" and report["weights"]["candidate"] is None
    assert write_chart(tmp_path / "x.png", report) is None and not (tmp_path / "x.png").exists()
