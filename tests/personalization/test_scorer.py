import json

import numpy as np
import pytest

from ranking_gateway.personalization.profiles import apply_event
from ranking_gateway.personalization.scorer import (
    DEFAULT_PROTECT_HEAD_Z,
    FEATURE_NAMES,
    LEGACY_WEIGHTS,
    PersonalScorer,
    candidate_features,
)

rng = np.random.default_rng(0)
EMB = rng.normal(size=(6, 16)).astype(np.float32)
EMB /= np.linalg.norm(EMB, axis=1, keepdims=True)
ROW_OF = {f"d{i}": i for i in range(6)}


def profile_of(*clicks, ts=1000.0, weight=1.0):
    p = None
    for doc in clicks:
        p = apply_event(p, user_id="u", doc_id=f"d{doc}", type="click", weight=weight, ts=ts,
                        embedding=EMB[doc], half_life_s=3600.0)
    return p


def feats(profile, primary, now=1000.0):
    return candidate_features(profile, rows=np.arange(6), embeddings=EMB, row_of=ROW_OF, primary=np.asarray(primary),
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



def test_features_follow_the_candidate_rows_not_the_index_order():
    rows = np.array([5, 3, 0])
    f = candidate_features(profile_of(3), rows=rows, embeddings=EMB, row_of=ROW_OF, primary=np.array([3.0, 2, 1]),
                           retrieval=np.array([3.0, 2, 1]), now=1000.0)
    assert np.allclose(f[:, 2], EMB[rows] @ EMB[3], atol=1e-6)
    assert f[:, 3].tolist() == [0.0, 1.0, 0.0]

def spread_candidates(sims):
    """Unit vectors whose cosine to e0 (the profile) are exactly `sims`."""
    emb = np.zeros((len(sims), len(sims) + 1), dtype=np.float32)
    for i, sim in enumerate(sims):
        emb[i, 0], emb[i, i + 1] = sim, np.sqrt(1 - sim**2)
    return emb


def favourite_profile_and_embeddings():
    # a realistic spread: candidates' cosines to a profile differ by a few tenths; c9 is the favourite
    sims = [0.2, 0.3, 0.3, 0.25, 0.35, 0.3, 0.2, 0.3, 0.25, 0.65]
    emb = spread_candidates(sims)
    profile = apply_event(None, user_id="u", doc_id="elsewhere", type="click", weight=1.0, ts=0.0,
                          embedding=np.eye(1, emb.shape[1], 0)[0], half_life_s=3600.0)
    return profile, emb


def rank_with(scorer, primary):
    profile, emb = favourite_profile_and_embeddings()
    f = candidate_features(profile, rows=np.arange(10), embeddings=emb, row_of={}, primary=np.asarray(primary),
                           retrieval=np.asarray(primary), now=0.0)
    return [int(i) for i in scorer.rank(f)[0]]


EVENLY = np.linspace(1.0, 0.0, 10)  # evenly spaced reranker scores: no clear winner (z < 1.6)
WINNER = [5.0, 0.5, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1]  # c0 far ahead (z ~ 2.9)


def test_legacy_weights_move_a_document_a_few_places_but_not_past_a_clear_reranker_winner():
    legacy = PersonalScorer(weights=np.array(LEGACY_WEIGHTS), protect_head_z=None)
    evenly = rank_with(legacy, EVENLY)
    assert 1 <= 9 - evenly.index(9) <= 5 and evenly[0] == 0  # the favourite climbs, a few places
    winner = rank_with(legacy, WINNER)
    assert winner[0] == 0 and winner.index(9) < 9


def test_default_profile_leads_when_no_candidate_is_a_clear_winner_and_never_passes_one():
    scorer = PersonalScorer()
    assert scorer.protect_head_z == DEFAULT_PROTECT_HEAD_Z == 2.0
    assert rank_with(scorer, EVENLY)[0] == 9  # no protected head: the profile's favourite leads
    winner = rank_with(scorer, WINNER)
    assert winner[:2] == [0, 9]  # the clear winner keeps its place, the favourite comes right after
    # the protected head is what keeps the winner there: the same weights without it bury it
    assert rank_with(PersonalScorer(protect_head_z=None), WINNER)[0] == 9


def test_the_protected_head_keeps_its_incoming_order_and_the_rest_is_ranked_by_score():
    feats = np.zeros((6, len(FEATURE_NAMES)))
    feats[:, 0] = [2.5, 0.0, 2.1, -1.0, 3.0, 0.5]  # protected (z >= 2): rows 0, 2, 4 in that order
    feats[:, 2] = [0.0, 0.1, 0.0, 0.9, 0.0, 0.2]
    feats[:, 4] = 1.0
    order, scores = PersonalScorer(protect_head_z=2.0).rank(feats)
    assert order.tolist() == [0, 2, 4, 3, 5, 1]
    # scores never rise down the list: the protected head's are lifted to the best after them,
    # the others keep sigma(W^T f)
    raw = PersonalScorer().score(feats)
    assert np.all(np.diff(scores[order]) <= 0)
    assert np.allclose(scores[[3, 5, 1]], raw[[3, 5, 1]])
    assert np.all(scores[[0, 2, 4]] >= raw[[0, 2, 4]]) and scores[0] == pytest.approx(raw[3])
    assert PersonalScorer(protect_head_z=None).rank(feats)[0].tolist() == [3, 4, 0, 5, 2, 1]  # by score only
    assert sorted(PersonalScorer(protect_head_z=10.0).rank(feats)[0].tolist()) == list(range(6))
    assert PersonalScorer().rank(feats[:0])[0].tolist() == []
    with pytest.raises(ValueError):
        PersonalScorer(protect_head_z=float("nan"))


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


def test_max_demotion_caps_how_far_a_candidate_falls_and_is_off_by_default():
    feats = np.zeros((6, len(FEATURE_NAMES)))
    feats[:, 0] = np.linspace(1.0, 0.0, 6)  # no protected head (z < 2)
    feats[:, 2] = [0.0, 0.0, 0.0, 0.0, 0.9, 1.0]  # the profile wants the last two first
    feats[:, 4] = 1.0
    assert PersonalScorer().max_demotion is None
    assert PersonalScorer().rank(feats)[0].tolist() == [5, 4, 0, 1, 2, 3]
    order, scores = PersonalScorer(max_demotion=1).rank(feats)
    assert order.tolist() == [5, 0, 1, 2, 3, 4]
    assert all(order.tolist().index(i) <= i + 1 for i in range(6))
    assert np.all(np.diff(scores[order]) <= 0)
    # a cap of 0 keeps the non-personalised order exactly; a large cap changes nothing
    assert PersonalScorer(max_demotion=0).rank(feats)[0].tolist() == list(range(6))
    assert PersonalScorer(max_demotion=100).rank(feats)[0].tolist() == [5, 4, 0, 1, 2, 3]
    with pytest.raises(ValueError):
        PersonalScorer(max_demotion=-1)


def test_profile_expansion_measures_against_the_mean_of_the_documents_nearest_to_the_profile():
    from ranking_gateway.personalization.scorer import profile_direction

    p = profile_of(3)
    assert np.allclose(profile_direction(p, EMB), EMB[3], atol=1e-6)  # off: the centroid
    nearest2 = np.argsort(-(EMB @ EMB[3]))[:2]
    mean = EMB[nearest2].sum(axis=0)
    assert np.allclose(profile_direction(p, EMB, expansion=2), mean / np.linalg.norm(mean), atol=1e-6)
    f = candidate_features(p, rows=np.arange(6), embeddings=EMB, row_of=ROW_OF, primary=np.arange(6.0),
                           retrieval=np.arange(6.0), now=1000.0, expansion=2)
    assert np.allclose(f[:, 2], EMB @ (mean / np.linalg.norm(mean)), atol=1e-5)
    with pytest.raises(ValueError):
        PersonalScorer(profile_expansion=-1)


def test_optional_settings_round_trip_and_default_files_do_not_carry_them(tmp_path):
    assert set(PersonalScorer().to_json()) == {"features", "weights", "recency_half_life_s"}
    scorer = PersonalScorer(profile_expansion=25, expansion_steps=2, max_demotion=3)
    path = tmp_path / "w.json"
    path.write_text(json.dumps(scorer.to_json()))
    loaded = PersonalScorer.load(path)
    assert (loaded.profile_expansion, loaded.expansion_steps, loaded.max_demotion) == (25, 2, 3)
