"""A cross-encoder reranker, warm-started from the served one and fine-tuned on clicks.

A cross-encoder reads the query and the document together: nothing about the corpus was
computed with it at build time, so the whole model trains (at a small learning rate: a warm
start, not a new model), and a new version is the served build with only its `reranker` Triton
model exported anew (`ranking_build.cross_encoder_swap`). It scores as the gateway does: each
pair query first, document second, truncated `longest_first` at the served token budget.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ranking_gateway.learning.click_examples import ClickExample
from ranking_gateway.learning.listwise import train_listwise
from ranking_gateway.learning.query_side import QueryTrainConfig
from ranking_gateway.training.loop import pair_logits, score_pairs, tokenize_pairs


class CrossEncoderModel:
    """A cross-encoder reranker directory over the corpus texts (`texts[row]`: what `build`
    indexed as the document's full text, what the gateway sends with the query)."""

    def __init__(self, reranker_dir: Path, texts: Sequence[str], max_length: int) -> None:
        from transformers import AutoTokenizer

        from ranking_build.models import CrossEncoder

        self.source = Path(reranker_dir)
        self.model = CrossEncoder(self.source).transformer.float()  # build's loader: one logit, eval mode
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.source))
        self.texts, self.max_length = texts, max_length

    def scores(self, query: str, rows: Sequence[int]) -> np.ndarray:
        """The logit of each (query, document) pair, as the served model computes it (fp32)."""
        docs = [self.texts[r] for r in rows]
        return np.asarray(score_pairs(self.model, self.tokenizer, query, docs, self.max_length, bf16=False))

    def train(self, examples: Sequence[ClickExample], cfg: QueryTrainConfig) -> list[float]:
        """Propensity-weighted listwise loss (`listwise.train_listwise`) over each click and the
        request's unclicked documents. Returns the loss of every step."""
        torch.manual_seed(cfg.seed)
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=0.01)

        def logits_of(batch: Sequence[ClickExample]) -> list[torch.Tensor]:
            out = []
            for ex in batch:
                docs = [self.texts[r] for r in (ex.clicked, *ex.others[: cfg.max_others])]
                enc = tokenize_pairs(self.tokenizer, [ex.query] * len(docs), docs, self.max_length)
                out.append(pair_logits(self.model, enc, bf16=False))
            return out

        self.model.train()
        losses = train_listwise(examples, logits_of, optimizer, self.model.parameters(), epochs=cfg.epochs,
                                batch=cfg.batch, eta=cfg.eta, max_weight=cfg.max_weight, seed=cfg.seed)
        self.model.eval()
        return losses

    def save(self, out: Path, report: dict) -> None:
        """A reranker directory `build --reranker` takes: the model in fp16, its tokenizer, the report."""
        out.mkdir(parents=True, exist_ok=True)
        self.model.half().save_pretrained(str(out))
        self.model.float()
        self.tokenizer.save_pretrained(str(out))
        (out / "training_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
