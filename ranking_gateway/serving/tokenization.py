"""Tokenisation in the gateway, with the `tokenizers` library (Rust, releases the GIL).

Sequences are padded to a multiple of `BUCKET` tokens: requests from different users then share
shapes, which the dynamic batcher needs to merge them (and TensorRT profiles like).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

BUCKET = 32


@dataclass(frozen=True)
class TokenBatch:
    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def rows(self, start: int, stop: int) -> "TokenBatch":
        """A slice of rows, trimmed to the longest of them (rounded up to the bucket)."""
        mask = self.attention_mask[start:stop]
        width = min(mask.shape[1], _bucket(int(mask.sum(axis=1).max())))
        return TokenBatch(
            self.input_ids[start:stop, :width],
            mask[:, :width],
            self.token_type_ids[start:stop, :width],
        )


def _bucket(length: int) -> int:
    return max(BUCKET, -(-length // BUCKET) * BUCKET)


class TextTokenizer:
    """One model's tokenizer, truncating to `max_length` and padding to bucket multiples."""

    def __init__(self, directory: Path, max_length: int) -> None:
        self._tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
        # longest_first: never fails (a single text, or a query longer than the budget) and, the
        # documents being the longer side, it trims them first
        self._tok.enable_truncation(max_length=max_length, strategy="longest_first")
        self._tok.enable_padding(pad_to_multiple_of=BUCKET)
        self.max_length = max_length

    @property
    def lowercases(self) -> bool:
        """True when case cannot change the model's input (so the cache may ignore case)."""
        return self._tok.encode("Apple").ids == self._tok.encode("apple").ids

    def encode(self, texts: Sequence[str]) -> TokenBatch:
        return self._to_batch(self._tok.encode_batch(list(texts)))

    def encode_pairs(self, query: str, documents: Sequence[str]) -> TokenBatch:
        return self._to_batch(self._tok.encode_batch([(query, d) for d in documents]))

    @staticmethod
    def _to_batch(encodings: list) -> TokenBatch:
        return TokenBatch(
            input_ids=np.array([e.ids for e in encodings], dtype=np.int64),
            attention_mask=np.array([e.attention_mask for e in encodings], dtype=np.int64),
            token_type_ids=np.array([e.type_ids for e in encodings], dtype=np.int64),
        )
