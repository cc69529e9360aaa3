"""The loaded index: FAISS (and BM25, where the build made one) for candidates, the documents
for titles and snippets, the embeddings for personalisation (a profile is a centroid in the
same space). The searches themselves are `core.first_stage`'s, shared with training and
evaluation."""

from __future__ import annotations

import faiss
import numpy as np

from ranking_gateway.core.artifacts import ArtifactPaths, Manifest
from ranking_gateway.core.corpus import Document, read_corpus
from ranking_gateway.core.first_stage import Hits, dense_search
from ranking_gateway.core.lexical import LexicalIndex


class DocumentIndex:
    def __init__(self, paths: ArtifactPaths, manifest: Manifest | None = None) -> None:
        """`manifest` (read from `paths` when not given) says whether a BM25 index was built."""
        manifest = manifest if manifest is not None else Manifest.read(paths.root)
        self.faiss = faiss.read_index(str(paths.faiss_index))
        self.embeddings = np.load(paths.embeddings, mmap_mode="r")
        self.documents: list[Document] = read_corpus(paths.documents)
        self.row_of: dict[str, int] = {d.id: i for i, d in enumerate(self.documents)}
        if self.faiss.ntotal != len(self.documents):
            raise ValueError(f"index has {self.faiss.ntotal} vectors but {len(self.documents)} documents")
        self.lexical: LexicalIndex | None = None
        if manifest.bm25 is not None:
            # queried with the stemmer it was built with (None in manifests from before stemming)
            self.lexical = LexicalIndex.load(paths.root / manifest.bm25.path, stemmer=manifest.bm25.stemmer)
            if len(self.lexical) != len(self.documents):
                raise ValueError(f"BM25 index has {len(self.lexical)} rows but {len(self.documents)} documents")

    def __len__(self) -> int:
        return len(self.documents)

    def search(self, query_embedding: np.ndarray, n: int) -> Hits:
        """Top-n rows and their inner-product scores, best first (`first_stage.dense_search`)."""
        return dense_search(self.faiss, query_embedding, n)

    def lexical_search(self, query: str, n: int) -> Hits:
        """Top-n rows and BM25 scores, best first (CPU work: call it from a worker thread)."""
        if self.lexical is None:
            raise ValueError("this index has no BM25 index")
        return self.lexical.search(query, n)

    def snippet(self, row: int, chars: int) -> str:
        text = self.documents[row].text
        if len(text) <= chars:
            return text
        cut = text.rfind(" ", 0, chars)
        return text[: cut if cut > chars // 2 else chars] + "…"
