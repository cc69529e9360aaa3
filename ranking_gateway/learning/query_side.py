"""The late-interaction reranker's query side, warm-started from the serving reranker and trained
on clicks against the build's token store.

Why only the query side: the document side (a frozen Transformer and the document projection)
is what `build` ran over the corpus into the token store, the expensive part of a build. Keeping
it fixed means a learning round needs no pass over the corpus (it reads the same int8 vectors
the gateway scores against, so training sees what serving sees), and a new version is the old
artifacts with one re-exported Triton model (`ranking_build.query_side`). The query encoder
and query projection are what adapt to how users phrase what they want.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ranking_gateway.core.reranker_dir import LATE_INTERACTION_FILE, PROJECTIONS_FILE
from ranking_gateway.core.token_store import TokenStore
from ranking_gateway.learning.click_examples import ClickExample
from ranking_gateway.learning.listwise import train_listwise
from ranking_gateway.training.late_interaction import maxsim


@dataclass(frozen=True)
class QueryTrainConfig:
    """A round's fine-tuning of either reranker kind (`projection_lr`: late interaction only)."""

    epochs: int = 1
    batch: int = 8  # click examples per step
    lr: float = 1e-5  # query Transformer; small: a warm start, not a new model
    projection_lr: float = 1e-4
    eta: float = 1.0  # propensity exponent: a click at position p weighs p ** eta
    max_weight: float = 10.0
    max_others: int = 15  # unclicked documents per example (the served top k is 10 by default)
    seed: int = 13


class QuerySide:
    """The query encoder of a late-interaction reranker directory, scored against a token store."""

    def __init__(self, reranker_dir: Path, store: TokenStore) -> None:
        from transformers import AutoTokenizer

        from ranking_build.late_interaction import load_query_side

        self.source = Path(reranker_dir)
        self.config, self.encoder = load_query_side(self.source)
        if self.config.dim != store.dim:
            raise ValueError(f"{reranker_dir}: dim {self.config.dim}, the token store's is {store.dim}")
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.source))
        self.store = store
        self._docs: dict[int, torch.Tensor] = {}

    def encode(self, queries: Sequence[str]) -> torch.Tensor:
        enc = self.tokenizer(list(queries), padding=True, truncation=True, max_length=self.config.query_max_length,
                             return_tensors="pt")
        return self.encoder(enc["input_ids"], enc["attention_mask"])

    def _documents(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        for r in rows:
            if r not in self._docs:
                self._docs[r] = torch.from_numpy(self.store.document(r))
        longest = max(self._docs[r].shape[0] for r in rows)
        docs = torch.zeros(len(rows), longest, self.store.dim)
        mask = torch.zeros(len(rows), longest)
        for i, r in enumerate(rows):
            n = self._docs[r].shape[0]
            docs[i, :n], mask[i, :n] = self._docs[r], 1.0
        return docs, mask

    def scores(self, query: str, rows: Sequence[int]) -> np.ndarray:
        """MaxSim of `rows` as the gateway computes it (the store's own numpy MaxSim)."""
        with torch.inference_mode():
            q = self.encode([query])[0].numpy()
        return self.store.maxsim(q, rows)

    def train(self, examples: Sequence[ClickExample], cfg: QueryTrainConfig) -> list[float]:
        """Propensity-weighted listwise loss (`listwise.train_listwise`) over each click and the
        request's unclicked documents. Returns the loss of every step."""
        torch.manual_seed(cfg.seed)
        optimizer = torch.optim.AdamW(
            [{"params": list(self.encoder.transformer.parameters()), "lr": cfg.lr},
             {"params": list(self.encoder.projection.parameters()), "lr": cfg.projection_lr}],
            weight_decay=0.01,
        )

        def logits_of(batch: Sequence[ClickExample]) -> list[torch.Tensor]:
            queries = self.encode([e.query for e in batch])
            return [maxsim(q, *self._documents([ex.clicked, *ex.others[: cfg.max_others]]))
                    for q, ex in zip(queries, batch)]

        self.encoder.train()
        losses = train_listwise(examples, logits_of, optimizer, self.encoder.parameters(), epochs=cfg.epochs,
                                batch=cfg.batch, eta=cfg.eta, max_weight=cfg.max_weight, seed=cfg.seed)
        self.encoder.eval()
        return losses

    def save(self, out: Path, report: dict) -> None:
        """A reranker directory `build --reranker` takes: the trained query side (fp16), and the
        source's document projection and configuration byte for byte (the token store stays right)."""
        from safetensors.torch import load_file, save_file

        out.mkdir(parents=True, exist_ok=True)
        transformer = self.encoder.transformer
        transformer.half().save_pretrained(str(out))
        transformer.float()
        self.tokenizer.save_pretrained(str(out))
        source = load_file(str(self.source / PROJECTIONS_FILE))
        save_file({"query": self.encoder.projection.weight.detach().half().contiguous(),
                   "document": source["document"].contiguous()}, str(out / PROJECTIONS_FILE))
        shutil.copy2(self.source / LATE_INTERACTION_FILE, out / LATE_INTERACTION_FILE)
        (out / "training_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
