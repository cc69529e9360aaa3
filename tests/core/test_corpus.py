from pathlib import Path

import pytest

from ranking_gateway.core.corpus import CorpusError, read_corpus
from ranking_build.pipeline import run_build
from ranking_gateway.core.config import BuildSettings


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_reads_beir_lines_with_optional_title(tmp_path: Path) -> None:
    docs = read_corpus(write(tmp_path, '{"_id": "a", "title": "T", "text": "x"}', "", '{"_id": 7, "text": "y"}'))
    assert [(d.id, d.title, d.text) for d in docs] == [("a", "T", "x"), ("7", "", "y")]
    assert docs[0].full_text == "T. x" and docs[1].full_text == "y"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["a"]', "expected a JSON object"),
        ('{"title": "t", "text": "x"}', "'_id'"),
        ('{"_id": "b", "title": "t"}', "'text'"),
        ('{"_id": "b", "text": 3}', "'text'"),
        ('{"_id": "b", "title": "", "text": "  "}', "neither title nor text"),
        ('{"_id": "a", "text": "dup"}', "duplicate _id"),
    ],
)
def test_bad_line_names_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path, '{"_id": "a", "text": "fine"}', line)
    with pytest.raises(CorpusError, match=rf"corpus.jsonl:2: .*{message}"):
        read_corpus(path)


def test_bad_corpus_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "artifacts"
    with pytest.raises(CorpusError):
        run_build(BuildSettings(corpus=write(tmp_path, '{"_id": "a"'), artifacts=out))
    assert list(tmp_path.iterdir()) == [tmp_path / "corpus.jsonl"]
