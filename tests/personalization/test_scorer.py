import json
from pathlib import Path

import numpy as np
import pytest

from ranking_gateway.core.scoring import zscore
from ranking_gateway.personalization.profiles import apply_event
from ranking_gateway.personalization.scorer import (
    DEFAULT_PROTECT_HEAD_Z,
    DEFAULT_WEIGHTS,
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


def test_default_profile_comes_right_after_the_likely_answers_and_never_passes_one():
    scorer = PersonalScorer()
    assert scorer.protect_head_z == DEFAULT_PROTECT_HEAD_Z == 0.7
    # evenly spaced scores: the three with z >= 0.7 keep their places, the favourite comes next
    assert rank_with(scorer, EVENLY)[:4] == [0, 1, 2, 9]
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
    assert PersonalScorer(protect_head_z=None).rank(feats)[0].tolist() == [3, 5, 1, 4, 0, 2]  # by score only
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
    assert v2_scorer().rank(feats)[0].tolist() == [5, 4, 0, 1, 2, 3]
    order, scores = v2_scorer(max_demotion=1).rank(feats)
    assert order.tolist() == [5, 0, 1, 2, 3, 4]
    assert all(order.tolist().index(i) <= i + 1 for i in range(6))
    assert np.all(np.diff(scores[order]) <= 0)
    # a cap of 0 keeps the non-personalised order exactly; a large cap changes nothing
    assert v2_scorer(max_demotion=0).rank(feats)[0].tolist() == list(range(6))
    assert v2_scorer(max_demotion=100).rank(feats)[0].tolist() == [5, 4, 0, 1, 2, 3]
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


# ----------------------------------------------------------------------------- v4 levers (off by default)


def page_features(profile_sims, primary=None):
    """Features of a list in the non-personalised order: primary falling evenly (no protected
    head), the given cosines to the profile."""
    n = len(profile_sims)
    f = np.zeros((n, len(FEATURE_NAMES)))
    f[:, 0] = np.linspace(1.5, -1.5, n) if primary is None else primary
    f[:, 2] = profile_sims
    f[:, 4] = 1.0
    return f


def moved(order):
    return sum(int(i != j) for i, j in enumerate(order))


def test_v4_levers_are_off_by_default_and_change_nothing_then():
    scorer = PersonalScorer()
    assert (scorer.affinity_gate, scorer.confidence_ref, scorer.profile_floor_quantile, scorer.max_newcomers,
            scorer.keep_page_order) == (None, None, None, None, False)
    f = page_features(rng.uniform(0.0, 0.6, size=30))
    assert scorer.personal_features(f) is f and scorer.profile_scale(f) == 1.0
    unprotected = PersonalScorer(protect_head_z=None)
    order, scores = unprotected.rank(f)
    assert np.array_equal(order, np.argsort(-unprotected.score(f), kind="stable"))


def test_affinity_gate_moves_less_for_a_query_unrelated_to_the_profile():
    scorer = PersonalScorer(affinity_gate=(0.1, 0.4))
    sims = np.array([0.05] * 10 + [0.05] * 15 + [0.6] * 5)  # the top 10 is far from the profile
    unrelated = page_features(sims)
    related = page_features(sims + np.r_[[0.35] * 10, [0.0] * 20])  # the same list, the top 10 near it
    assert scorer.profile_scale(unrelated) == 0.0 and scorer.profile_scale(related) == pytest.approx(1.0)
    # off-topic query: the non-personalised order exactly; on-topic: the profile moves documents
    assert scorer.rank(unrelated)[0].tolist() == list(range(30))
    assert moved(scorer.rank(related)[0]) > 0
    assert moved(PersonalScorer().rank(unrelated)[0]) > 0  # without the gate the profile moves it
    with pytest.raises(ValueError):
        PersonalScorer(affinity_gate=(0.4, 0.1))


def test_confidence_scale_personalises_a_tight_head_more_than_a_clear_winner():
    scorer = PersonalScorer(confidence_ref=2.0, confidence_cap=3.0, protect_head_z=None)
    tight = page_features(np.zeros(20), primary=np.r_[np.linspace(1.0, 0.5, 10), np.linspace(0.4, -3, 10)])
    spread = page_features(np.zeros(20), primary=np.r_[np.linspace(4.0, 0.0, 10), np.linspace(-0.1, -3, 10)])
    assert scorer.profile_scale(tight) == pytest.approx(3.0)  # spread 0.5: capped at 3
    assert scorer.profile_scale(spread) == pytest.approx(0.5)  # spread 4: 2 / 4
    sims = np.r_[np.zeros(10), np.full(10, 0.3)]
    tight[:, 2] = spread[:, 2] = sims
    plain = PersonalScorer(protect_head_z=None)
    assert moved(scorer.rank(tight)[0]) >= moved(plain.rank(tight)[0])
    assert moved(scorer.rank(spread)[0]) <= moved(plain.rank(spread)[0])


def test_profile_floor_promotes_only_what_is_clearly_nearer_the_profile():
    # rows 0..5 slightly nearer the profile the lower they rank; row 7 clearly nearest
    f = page_features([0.10, 0.12, 0.14, 0.16, 0.18, 0.20, 0.10, 0.60], primary=np.linspace(0.7, -0.7, 8))
    plain = PersonalScorer(protect_head_z=None, weights=np.array([1.0, 0.25, 20.0, 0.5, 0.0]))
    floored = replace_scorer(plain, profile_floor_quantile=0.875)
    assert plain.rank(f)[0].tolist()[:2] == [7, 5]  # the plain cosine also reshuffles the near-ties
    order = floored.rank(f)[0].tolist()
    assert order[0] == 7 and order[1:] == [0, 1, 2, 3, 4, 5, 6]


def v2_scorer(**settings) -> PersonalScorer:
    """The v2 defaults (profile_sim 10, protected head z >= 2), which the lever tests were built on."""
    return PersonalScorer(weights=np.array([1.0, 0.25, 10.0, 0.5, 0.0]), protect_head_z=2.0, **settings)


def replace_scorer(scorer, **changes):
    from dataclasses import replace

    return replace(scorer, **changes)


def test_max_newcomers_limits_what_enters_the_page_and_keep_page_order_keeps_the_incumbents_order():
    sims = np.r_[np.linspace(0.0, 0.3, 10), np.full(5, 0.8), np.zeros(5)]  # rows 10-14 are the user's
    f = page_features(sims, primary=np.linspace(1.5, -1.5, 20))
    free = v2_scorer(page=10)
    assert sum(i >= 10 for i in free.rank(f)[0][:10]) == 5
    limited = v2_scorer(page=10, max_newcomers=2)
    order = limited.rank(f)[0].tolist()
    assert sorted(i for i in order[:10] if i >= 10) == [10, 11]  # the two best-scored newcomers
    assert sorted(order) == list(range(20))
    assert set(v2_scorer(page=10, max_newcomers=0).rank(f)[0][:10].tolist()) == set(range(10))
    kept = v2_scorer(page=10, keep_page_order=True).rank(f)[0].tolist()
    incumbents = [i for i in kept if i < 10]
    assert incumbents == sorted(incumbents) and kept[:10] != list(range(10))  # newcomers still enter
    order, scores = v2_scorer(page=10, max_newcomers=1, keep_page_order=True).rank(f)
    assert np.all(np.diff(scores[order]) <= 0)
    with pytest.raises(ValueError):
        PersonalScorer(max_newcomers=-1)


def test_v4_settings_round_trip(tmp_path):
    scorer = PersonalScorer(affinity_gate=(0.1, 0.3), confidence_ref=3.0, confidence_cap=1.0,
                            profile_floor_quantile=0.8, max_newcomers=2, keep_page_order=True, page=8)
    path = tmp_path / "w.json"
    path.write_text(json.dumps(scorer.to_json()))
    loaded = PersonalScorer.load(path)
    assert (loaded.affinity_gate, loaded.confidence_ref, loaded.confidence_cap, loaded.profile_floor_quantile,
            loaded.max_newcomers, loaded.keep_page_order, loaded.page) == ((0.1, 0.3), 3.0, 1.0, 0.8, 2, True, 8)


def test_z_head_round_trips_and_a_file_without_it_gets_the_default(tmp_path):
    from ranking_gateway.personalization.scorer import DEFAULT_Z_HEAD

    path = tmp_path / "w.json"
    for z_head in (None, 12):
        path.write_text(json.dumps(PersonalScorer(z_head=z_head).to_json()))
        assert PersonalScorer.load(path).z_head == z_head
    assert "z_head" not in PersonalScorer().to_json()  # the default is not written...
    assert PersonalScorer.from_json({"weights": dict(zip(FEATURE_NAMES, DEFAULT_WEIGHTS))}).z_head == DEFAULT_Z_HEAD
    # ... and the shipped files of the defaults before v5 keep their z over the whole list
    for name in ("legacy", "v2"):
        shipped = Path(__file__).resolve().parents[2] / "bench" / "results" / f"personalization_weights_{name}.json"
        assert PersonalScorer.load(shipped).z_head is None
    with pytest.raises(ValueError):
        PersonalScorer(z_head=1)


def test_primary_is_z_scored_against_the_head_it_is_given():
    primary = np.r_[np.linspace(3.0, 1.0, 5), np.full(5, 0.0)]
    profile, emb = favourite_profile_and_embeddings()
    on_head = candidate_features(profile, rows=np.arange(10), embeddings=emb, row_of={}, primary=primary,
                                 retrieval=primary, now=0.0, head=5)[:, 0]
    assert np.allclose(on_head[:5], zscore(primary[:5])) and np.all(on_head[5:] < on_head[4])
    whole = candidate_features(profile, rows=np.arange(10), embeddings=emb, row_of={}, primary=primary,
                               retrieval=primary, now=0.0)[:, 0]
    assert np.allclose(whole, zscore(primary))


@pytest.mark.anyio
async def test_a_user_without_a_profile_keeps_the_exact_ranking_whatever_the_v4_levers(tmp_path):
    from ranking_gateway.personalization.jsonl_log import JsonlEventLog
    from ranking_gateway.personalization.memory_store import InMemoryProfileStore
    from ranking_gateway.personalization.service import Personalization

    scorer = PersonalScorer(affinity_gate=(0.0, 0.1), confidence_ref=5.0, profile_floor_quantile=0.5,
                            max_newcomers=3, keep_page_order=True, page=3)
    p = Personalization(embeddings=EMB, doc_ids=list(ROW_OF), store=InMemoryProfileStore(),
                        event_log=JsonlEventLog(tmp_path), scorer=scorer)
    try:
        rows = np.array([4, 2, 0, 5, 1, 3])
        out = await p.personalize("nobody", rows, np.arange(6.0)[::-1], np.arange(6.0)[::-1], request_id="r",
                                  k=4, query="q")
        assert out is None
    finally:
        await p.close()
