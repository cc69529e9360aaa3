"""Reading a BEIR-layout corpus (JSON lines `{"_id", "title"?, "text"}`), strictly.

A bad line stops the build with an error naming the line, before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ranking_gateway.core.errors import CliError


@dataclass(frozen=True, slots=True)
class Document:
    id: str
    title: str
    text: str

    @property
    def full_text(self) -> str:
        """What the models see: title and body, as BEIR evaluations feed them."""
        return f"{self.title}. {self.text}" if self.title else self.text

    def to_json(self) -> dict[str, str]:
        return {"_id": self.id, "title": self.title, "text": self.text}


class CorpusError(CliError):
    """The corpus file is unreadable or a line breaks the format."""


def parse_document(line: str, where: str) -> Document:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise CorpusError(f"{where}: expected a JSON object")
    doc_id, title, text = obj.get("_id"), obj.get("title", ""), obj.get("text")
    if isinstance(doc_id, int):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id.strip():
        raise CorpusError(f"{where}: '_id' must be a non-empty string")
    if title is None:
        title = ""
    if not isinstance(title, str):
        raise CorpusError(f"{where}: 'title' must be a string")
    if not isinstance(text, str):
        raise CorpusError(f"{where}: 'text' must be a string")
    if not (title.strip() or text.strip()):
        raise CorpusError(f"{where}: document {doc_id!r} has neither title nor text")
    return Document(id=doc_id, title=title.strip(), text=text.strip())


def read_corpus(path: str | Path) -> list[Document]:
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: no such corpus file")
    docs: list[Document] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            doc = parse_document(line, f"{path}:{number}")
            if doc.id in seen:
                raise CorpusError(f"{path}:{number}: duplicate _id {doc.id!r}")
            seen.add(doc.id)
            docs.append(doc)
    if not docs:
        raise CorpusError(f"{path}: the corpus is empty")
    return docs


def write_documents(docs: Iterable[Document], path: Path) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for doc in docs:
            fh.write(json.dumps(doc.to_json(), ensure_ascii=False) + "\n")
