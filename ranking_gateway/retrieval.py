"""The loaded index: FAISS for candidates, the documents for titles and snippets, the embeddings
for personalisation (a profile is a centroid in the same space)."""

from __future__ import annotations

import json

import faiss
import numpy as np

from ranking_build.corpus import Document
from ranking_gateway.artifacts import ArtifactPaths


class DocumentIndex:
    def __init__(self, paths: ArtifactPaths) -> None:
        self.faiss = faiss.read_index(str(paths.faiss_index))
        self.embeddings = np.load(paths.embeddings, mmap_mode="r")
        self.documents: list[Document] = []
        with paths.documents.open(encoding="utf-8") as fh:
            for line in fh:
                obj = json.loads(line)
                self.documents.append(Document(obj["_id"], obj.get("title", ""), obj["text"]))
        self.row_of: dict[str, int] = {d.id: i for i, d in enumerate(self.documents)}
        if self.faiss.ntotal != len(self.documents):
            raise ValueError(f"index has {self.faiss.ntotal} vectors but {len(self.documents)} documents")

    def __len__(self) -> int:
        return len(self.documents)

    def search(self, query_embedding: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-n rows and their inner-product scores, best first."""
        n = min(n, len(self.documents))
        scores, rows = self.faiss.search(np.ascontiguousarray(query_embedding.reshape(1, -1), dtype=np.float32), n)
        keep = rows[0] >= 0
        return rows[0][keep], scores[0][keep]

    def snippet(self, row: int, chars: int) -> str:
        text = self.documents[row].text
        if len(text) <= chars:
            return text
        cut = text.rfind(" ", 0, chars)
        return text[: cut if cut > chars // 2 else chars] + "…"
