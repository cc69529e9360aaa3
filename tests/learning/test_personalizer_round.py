import numpy as np
import pytest

from ranking_gateway.learning.personalizer_round import (
    DEPLOY,
    REFUSED,
    SKIPPED,
    RoundConfig,
    gate,
    ips_clicks_at_k,
    run_round,
    select_window,
)
from ranking_gateway.personalization.jsonl_log import read_records
from ranking_gateway.personalization.scorer import PersonalScorer
from ranking_gateway.personalization.trainer import Dataset
from tests.learning.conftest import write_log

CONFIG = RoundConfig(settle_s=0.0)


def records(tmp_path, n, clicks, **kw):
    write_log(tmp_path / "events" / "events-000001.jsonl", n, clicks=clicks, **kw)
    return list(read_records(tmp_path / "events"))


def test_clicks_that_follow_the_profile_pass_the_gate(tmp_path):
    result = run_round(records(tmp_path, 1500, "profile"), PersonalScorer(), None, CONFIG)
    assert result.verdict == DEPLOY, result.reason
    assert [c["name"] for c in result.checks] == ["signal", "log_loss", "auc"] and all(c["passed"] for c in result.checks)
    serving, candidate = result.metrics["serving"], result.metrics["candidate"]
    assert candidate["log_loss_calibrated"] < result.metrics["click_rate_only"]["log_loss"] * 0.8
    assert candidate["auc"] > 0.8 and candidate["auc"] >= serving["auc"] - CONFIG.margin
    assert candidate["log_loss"] < serving["log_loss"]  # the defaults are not calibrated probabilities
    # the re-rankings put more (debiased) clicks in the top 3 than the logged order did
    assert min(serving["ips_clicks_at_k"], candidate["ips_clicks_at_k"]) > result.metrics["logged"]["ips_clicks_at_k"]
    assert result.candidate.weights[2] > 5  # it learnt the profile feature
    assert result.window.cursor_to == 1000.0 + 1499 and result.window.impressions == 1500


def test_with_the_position_term_the_candidate_still_passes_and_eta_comes_from_the_fit(tmp_path):
    result = run_round(records(tmp_path, 1500, "profile"), PersonalScorer(), None,
                       RoundConfig(settle_s=0.0, position_bias=True))
    assert result.verdict == DEPLOY, result.reason
    assert result.position_weight < -0.5 and result.eta == pytest.approx(-result.position_weight)


def test_random_clicks_are_refused_the_candidate_carries_no_signal(tmp_path):
    serving = PersonalScorer()
    result = run_round(records(tmp_path, 1500, "noise"), serving, None, CONFIG)
    assert result.verdict == REFUSED and result.reason == "failed signal"
    signal = result.checks[0]
    assert signal["name"] == "signal" and not signal["passed"]
    assert abs(result.metrics["candidate"]["auc"] - 0.5) < 0.05
    assert result.window.cursor_to == 1000.0 + 1499  # a refused round consumed its window


def test_too_few_clicks_skip_the_round(tmp_path):
    result = run_round(records(tmp_path, 30, "profile"), PersonalScorer(), None, RoundConfig(settle_s=0.0, min_clicks=100))
    assert result.verdict == SKIPPED and "< --min-clicks 100" in result.reason
    assert result.candidate is None and result.metrics == {} and result.counts["impressions"] == 30


def test_the_window_starts_after_the_cursor_and_leaves_unsettled_impressions(tmp_path):
    recs = records(tmp_path, 100, "profile", start_ts=0.0)  # impressions at 0..99, clicks 5 s later
    window = select_window(recs, cursor=49.0, settle_s=30.0)  # newest record at <= 104: horizon ~74
    impressions = [r["ts"] for r in window.records if r["kind"] == "impression"]
    newest = max(r["ts"] for r in recs)
    assert impressions == [float(t) for t in range(50, int(newest - 30) + 1)]
    assert window.cursor_to == impressions[-1] and window.cursor_from == 49.0
    # every event stays (a click on an impression of the window may come at any time)
    assert sum(r["kind"] == "event" for r in window.records) == sum(r["kind"] == "event" for r in recs)
    nothing = select_window(recs, cursor=1e9, settle_s=0.0)
    assert nothing.impressions == 0 and nothing.cursor_to == 1e9


def test_the_gate_refuses_a_candidate_worse_than_the_serving_weights():
    serving = {"log_loss_calibrated": 0.20, "auc": 0.80}
    fine = gate(serving, {"log_loss_calibrated": 0.2019, "auc": 0.791}, base_log_loss=0.30, margin=0.01)
    assert all(c["passed"] for c in fine)
    worse = gate(serving, {"log_loss_calibrated": 0.2021, "auc": 0.789}, base_log_loss=0.30, margin=0.01)
    assert [c["name"] for c in worse if not c["passed"]] == ["log_loss", "auc"]
    no_auc = gate(serving, {"log_loss_calibrated": 0.19, "auc": None}, base_log_loss=0.30, margin=0.01)
    assert [c["name"] for c in no_auc] == ["signal", "log_loss"]


def test_ips_clicks_at_k_weights_each_click_by_its_inverse_propensity():
    # one request, 4 shown documents; clicks at positions 2 and 4; feature 0 = primary
    features = np.array([[0.0, 0, 0, 0, 1], [1.0, 0, 0, 0, 1], [0.5, 0, 0, 0, 1], [2.0, 0, 0, 0, 1]])
    data = Dataset(features=features, labels=np.array([0.0, 1.0, 0.0, 1.0]), request_ids=["a"] * 4,
                   positions=np.arange(1.0, 5.0))
    mask = np.ones(4, dtype=bool)
    assert ips_clicks_at_k(data, mask, None, k=2, eta=1.0) == 2.0  # logged top 2: the click at 2
    by_primary = PersonalScorer(weights=np.array([1.0, 0, 0, 0, 0]), protect_head_z=None)
    assert ips_clicks_at_k(data, mask, by_primary, k=2, eta=1.0) == 6.0  # positions 4 and 2 on top
    assert ips_clicks_at_k(data, mask, by_primary, k=2, eta=0.0) == 2.0  # no position bias: plain clicks
