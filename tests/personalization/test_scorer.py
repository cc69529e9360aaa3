import json

import numpy as np
import pytest

from ranking_gateway.personalization.profiles import apply_event
from ranking_gateway.personalization.scorer import FEATURE_NAMES, PersonalScorer, candidate_features

rng = np.random.default_rng(0)
EMB = rng.normal(size=(6, 16)).astype(np.float32)
EMB /= np.linalg.norm(EMB, axis=1, keepdims=True)
IDS = [f"d{i}" for i in range(6)]


def profile_of(*clicks, ts=1000.0, weight=1.0):
    p = None
    for doc in clicks:
        p = apply_event(p, user_id="u", doc_id=f"d{doc}", type="click", weight=weight, ts=ts,
                        embedding=EMB[doc], half_life_s=3600.0)
    return p


def feats(profile, primary, now=1000.0):
    return candidate_features(profile, doc_ids=IDS, embeddings=EMB, primary=np.asarray(primary),
                              retrieval=np.asarray(primary) / 10, now=now)


def test_features_without_a_profile_are_zero_in_the_personal_columns():
    f = feats(None, [5, 4, 3, 2, 1, 0])
    assert f.shape == (6, len(FEATURE_NAMES))
    assert np.allclose(f[:, 2:4], 0) and np.allclose(f[:, 4], 1)
    assert abs(f[:, 0].mean()) < 1e-12 and f[:, 0].std() == pytest.approx(1.0)


def test_profile_similarity_and_recency_features():
    p = profile_of(3)
    f = feats(p, [5, 4, 3, 2, 1, 0], now=1000.0 + 3600.0)
    assert f[3, 2] == pytest.approx(1.0, abs=1e-6) and np.allclose(f[:, 2], EMB @ EMB[3], atol=1e-6)
    assert f[3, 3] == pytest.approx(0.5)  # clicked one recency half-life ago
    assert np.count_nonzero(f[:, 3]) == 1
    skipped = apply_event(p, user_id="u", doc_id="d0", type="skip", weight=-0.5, ts=1000.0,
                          embedding=EMB[0], half_life_s=3600.0)
    assert feats(skipped, [5, 4, 3, 2, 1, 0])[0, 3] == pytest.approx(-1.0)


def test_a_click_moves_a_document_up_but_does_not_bury_a_clear_reranker_winner():
    scorer = PersonalScorer()
    close = [1.0, 0.95, 0.9, 0.85, 0.8, 0.75]  # near-ties: the profile decides
    order, _ = scorer.rank(feats(profile_of(4), close, now=10**6))
    assert list(order).index(4) < 4
    wide = [10.0, 0.1, 0.0, -0.1, -0.2, -0.3]  # d0 is far ahead: it stays first
    order, scores = scorer.rank(feats(profile_of(4), wide, now=10**6))
    assert order[0] == 0 and np.all((scores > 0) & (scores < 1))


def test_weights_round_trip_and_are_validated(tmp_path):
    scorer = PersonalScorer(weights=np.array([1, 2, 3, 4, 5.0]), recency_half_life_s=60)
    path = tmp_path / "w.json"
    path.write_text(json.dumps(scorer.to_json()))
    loaded = PersonalScorer.load(path)
    assert np.array_equal(loaded.weights, scorer.weights) and loaded.recency_half_life_s == 60
    with pytest.raises(ValueError):
        PersonalScorer(weights=np.array([1.0, np.nan, 0, 0, 0]))
    with pytest.raises(ValueError):
        PersonalScorer.from_json({"weights": {"primary": 1.0}})
