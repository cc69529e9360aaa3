"""bench/learning_loop.py's pure parts: the query splits it measures on, and the judged
collection it writes for a one-split collection."""

from ranking_gateway.core.collection import load_collection
from tests.bench.bench_module import load_bench

loop = load_bench("learning_loop")


def test_query_splits_are_stable_disjoint_and_salted():
    qids = [f"q{i}" for i in range(400)]
    traffic, evaluation = loop.split_queries(qids, 0.5)
    assert sorted(traffic + evaluation) == sorted(qids) and not set(traffic) & set(evaluation)
    assert 150 < len(evaluation) < 250 and loop.split_queries(qids, 0.5) == (traffic, evaluation)
    # a second split of the evaluation queries with a salt halves them (without it, all would stay)
    rest, gate = loop.split_queries(evaluation, 0.5, salt="judged:")
    assert gate and rest and loop.split_queries(evaluation, 0.5)[0] == []


def test_judged_collection_is_a_beir_directory_of_the_given_queries(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "corpus.jsonl").write_text('{"_id": "d1", "title": "", "text": "one"}\n{"_id": "d2", "title": "", "text": "two"}\n')
    out = loop.judged_collection(source, {"a": "first", "b": "second"}, ["a"], {"a": {"d1": 1, "d2": 0}}, tmp_path / "j")
    coll = load_collection(out, "judged")
    assert coll.queries == {"a": "first"} and coll.qrels["a"]["d1"] == 1 and len(coll.documents) == 2
