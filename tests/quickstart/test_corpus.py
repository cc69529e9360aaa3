"""The stdlib quickstart collection: real harvesting from the installed stdlib, deterministic, BEIR-valid."""

from __future__ import annotations

import json
from pathlib import Path

from ranking_gateway.core.collection import load_collection, write_collection
from ranking_gateway.quickstart.corpus import CorpusSpec, build_collection
from ranking_gateway.quickstart.stdlib_docs import DocEntry, entries_from_source, split_summary, stdlib_root


def test_harvests_json_dumps_from_the_installed_stdlib() -> None:
    entries = {e.name: e for e in entries_from_source("json", stdlib_root() / "json" / "__init__.py")}
    assert "json.dumps" in entries and "json.loads" in entries
    summary, rest = split_summary(entries["json.dumps"].docstring)
    assert summary.startswith("Serialize") and "skipkeys" in rest


def test_split_summary_skips_signature_lines_and_needs_a_body() -> None:
    assert split_summary("dumps(obj) -> str\n\nReturn a string. It is long.") == ("Return a string.", "It is long.")
    assert split_summary("Only one sentence.") is None


def _entry(i: int, summary: str | None = None) -> DocEntry:
    body = " ".join(f"word{i}_{j}" for j in range(20))
    return DocEntry(f"mod.f{i}", "function", f"{summary or f'Do thing number {i} well.'}\n\n{body}.")


def test_collection_is_deterministic_and_drops_ambiguous_summaries(tmp_path: Path) -> None:
    entries = [_entry(i) for i in range(30)] + [_entry(100, "Return self==value."), _entry(101, "Return self==value.")]
    spec = CorpusSpec(test_queries=5)
    docs, queries, qrels = build_collection(entries, spec)
    assert (docs, queries, qrels) == build_collection(list(reversed(entries)), spec)
    assert len(docs) == 30 and "mod.f100" not in {d.id for d in docs}
    assert len(qrels["test"]) == 5 and len(qrels["train"]) == 25
    doc = next(d for d in docs if d.id == "mod.f3")
    assert queries["q:mod.f3"] not in doc.full_text  # the query sentence was cut out of its document
    write_collection(tmp_path, docs, queries, qrels)
    coll = load_collection(tmp_path, "test")
    assert len(coll.queries) == 5 and all(len(j) == 1 for j in coll.qrels.values())
    assert json.loads((tmp_path / "corpus.jsonl").read_text().splitlines()[0])["_id"] == docs[0].id
