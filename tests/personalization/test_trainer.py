import json

import numpy as np
import pytest

from ranking_gateway.cli import main
from ranking_gateway.personalization.scorer import FEATURE_NAMES, sigmoid
from ranking_gateway.personalization.trainer import (
    auc,
    build_dataset,
    fit_logistic,
    fit_position_debiased,
    holdout_mask,
)

TRUE_W = np.array([1.5, 0.0, 2.0, 0.5, -2.5])


def synthetic_log(path, n_requests=1500, seed=0, prefix="r"):
    rng = np.random.default_rng(seed)
    with path.open("w") as fh:
        for r in range(n_requests):
            feats = np.column_stack([rng.normal(size=(10, 3)), rng.choice([0.0, 1.0], size=10, p=[0.9, 0.1]),
                                     np.ones(10)])
            clicks = rng.random(10) < sigmoid(feats @ TRUE_W)
            ids = [f"d{r}-{i}" for i in range(10)]
            fh.write(json.dumps({"kind": "impression", "request_id": f"{prefix}{r}", "user_id": f"u{r % 50}",
                                 "doc_ids": ids, "features": feats.tolist()}) + "\n")
            for i in np.flatnonzero(clicks):
                fh.write(json.dumps({"kind": "event", "type": "click", "request_id": f"{prefix}{r}",
                                     "user_id": f"u{r % 50}", "doc_id": ids[i], "ts": 1.0}) + "\n")
            # noise that must not become labels: a skip, and a click under an unknown request
            fh.write(json.dumps({"kind": "event", "type": "skip", "request_id": f"{prefix}{r}", "user_id": f"u{r % 50}",
                                 "doc_id": ids[0], "ts": 1.0}) + "\n")
    return path


def test_join_labels_only_positive_events_of_the_same_request_and_user(tmp_path):
    records = [
        {"kind": "impression", "request_id": "a", "user_id": "u", "doc_ids": ["x", "y", "z"], "features": [[0] * 5] * 3},
        {"kind": "event", "type": "click", "request_id": "a", "user_id": "u", "doc_id": "y"},
        {"kind": "event", "type": "skip", "request_id": "a", "user_id": "u", "doc_id": "x"},
        {"kind": "event", "type": "click", "request_id": "a", "user_id": "other", "doc_id": "z"},
        {"kind": "event", "type": "purchase", "request_id": "b", "user_id": "u", "doc_id": "x"},
    ]
    data = build_dataset(records)
    assert data.labels.tolist() == [0.0, 1.0, 0.0] and data.features.shape == (3, len(FEATURE_NAMES))


def test_auc_matches_the_pairwise_definition():
    rng = np.random.default_rng(3)
    y = (rng.random(200) < 0.3).astype(float)
    s = np.round(rng.normal(size=200) + y, 1)  # rounding makes ties
    pos, neg = s[y == 1], s[y == 0]
    pairwise = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
    assert auc(y, s) == pytest.approx(pairwise)
    assert auc(np.ones(3), np.arange(3.0)) is None


def test_fit_recovers_the_generating_weights(tmp_path):
    data = build_dataset(json.loads(line) for line in synthetic_log(tmp_path / "log.jsonl").open())
    w = fit_logistic(data.features, data.labels, l2=1e-3)
    assert np.allclose(w, TRUE_W, atol=0.25)
    mask = holdout_mask(data.request_ids, 0.2)
    assert 0.15 < mask.mean() < 0.25
    per_request = {}
    for rid, held in zip(data.request_ids, mask):
        per_request.setdefault(rid, set()).add(bool(held))
    assert all(len(v) == 1 for v in per_request.values())


def test_train_personalizer_command_writes_loadable_weights(tmp_path, capsys):
    log_dir = tmp_path / "events"
    log_dir.mkdir()
    synthetic_log(log_dir / "events-000001.jsonl", 800, seed=1)
    synthetic_log(log_dir / "events-000002.jsonl", 800, seed=2, prefix="s")
    out = tmp_path / "weights.json"
    assert main(["train-personalizer", "--events", str(log_dir), "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert list(written["weights"]) == list(FEATURE_NAMES)
    held = written["training"]["heldout"]
    assert held["fitted"]["auc"] > 0.8 and held["fitted"]["log_loss"] < held["default"]["log_loss"]
    from ranking_gateway.personalization.scorer import PersonalScorer

    assert PersonalScorer.load(out).weights[2] == pytest.approx(written["weights"]["profile_sim"])
    assert "wrote" in capsys.readouterr().out


def test_train_personalizer_refuses_logs_without_clicks(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps({"kind": "impression", "request_id": "a", "user_id": "u", "doc_ids": ["x"],
                               "features": [[0, 0, 0, 0, 1]]}) + "\n")
    assert main(["train-personalizer", "--events", str(log), "--out", str(tmp_path / "w.json")]) == 2
    assert main(["train-personalizer", "--events", str(tmp_path / "missing"), "--out", str(tmp_path / "w.json")]) == 2
    err = capsys.readouterr().err
    assert "no clicks joined" in err and "no such event log" in err


def position_biased_log(path, n_requests=3000, seed=5):
    """Clicks with logit W.f - log(position): documents shown higher are clicked more whatever
    their features, and `primary` falls with the position (the ranking put better ones first)."""
    rng = np.random.default_rng(seed)
    positions = np.arange(1, 11)
    with path.open("w") as fh:
        for r in range(n_requests):
            primary = np.sort(rng.normal(size=10))[::-1] + 0.3 * rng.normal(size=10)
            feats = np.column_stack([primary, rng.normal(size=(10, 2)), np.zeros(10), np.ones(10)])
            clicks = rng.random(10) < sigmoid(feats @ TRUE_W - np.log(positions))
            ids = [f"d{r}-{i}" for i in range(10)]
            fh.write(json.dumps({"kind": "impression", "request_id": f"p{r}", "user_id": "u", "doc_ids": ids,
                                 "features": feats.tolist()}) + "\n")
            for i in np.flatnonzero(clicks):
                fh.write(json.dumps({"kind": "event", "type": "click", "request_id": f"p{r}", "user_id": "u",
                                     "doc_id": ids[i], "ts": 1.0, "position": int(i + 1)}) + "\n")
    return path


def test_the_position_term_absorbs_the_examination_bias(tmp_path):
    data = build_dataset(json.loads(line) for line in position_biased_log(tmp_path / "log.jsonl").open())
    assert data.positions.tolist()[:10] == list(range(1, 11))
    w, b = fit_position_debiased(data.features, data.labels, data.positions, l2=1e-3)
    naive = fit_logistic(data.features, data.labels, l2=1e-3)
    assert b == pytest.approx(-1.0, abs=0.25)
    assert abs(w[0] - TRUE_W[0]) < 0.2  # primary: its true weight
    assert naive[0] - TRUE_W[0] > 0.3  # without the term, the position bias inflates primary
    assert abs(w[2] - TRUE_W[2]) < 0.2 and w.shape == (len(FEATURE_NAMES),)


def test_train_personalizer_with_position_bias_keeps_only_the_feature_weights(tmp_path, capsys):
    log = position_biased_log(tmp_path / "log.jsonl", 1500)
    out = tmp_path / "w.json"
    assert main(["train-personalizer", "--events", str(log), "--out", str(out), "--position-bias"]) == 0
    written = json.loads(out.read_text())
    assert list(written["weights"]) == list(FEATURE_NAMES)
    assert written["training"]["position_bias"]["log_position_weight"] < -0.5
    held = written["training"]["heldout"]
    assert held["fitted_with_position"]["auc"] > held["fitted"]["auc"] - 0.05
    assert main(["train-personalizer", "--events", str(log), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["training"]["position_bias"] is None
