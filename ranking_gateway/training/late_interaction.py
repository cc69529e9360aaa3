"""Training the late-interaction reranker (`train-reranker --kind late-interaction`).

ColBERT's score, sum over query tokens of the best cosine with any document token, with the
document side frozen: the document Transformer (all-MiniLM-L6-v2, the stack's own bi-encoder)
runs over the corpus once, and training moves only the query encoder and the two linear
projections. That is what makes it trainable on a 2-core CPU in minutes (a cross-encoder step
reads every pair through the whole Transformer, forwards and backwards: 0.9 s a pair at 384
tokens, docs/reranker.md), and it is exactly what `build` stores: the document side at serve
time is the frozen Transformer's output through the trained document projection.

Supervision: the split's judgments, with negatives mined by the served first stage; the
held-out slice picks the epoch and the serving blend weight, as for the cross-encoder.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ranking_gateway.core.reranker_dir import BUILTIN_DOCUMENT_ENCODER, PROJECTIONS_FILE, LateInteractionConfig

log = logging.getLogger(__name__)


@dataclass(slots=True)
class LateTrainConfig:
    dim: int = 128
    query_max_length: int = 32
    document_max_length: int = 512
    epochs: int = 6
    batch_queries: int = 8
    negatives: int = 15
    lr: float = 3e-5  # query encoder
    projection_lr: float = 1e-3
    temperature: float = 1.0
    seed: int = 13
    max_steps: int | None = None
    alphas: tuple[float, ...] = (1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2)


@dataclass(frozen=True, slots=True)
class RowExample:
    """A query, one judged-relevant corpus row and the mined rows it is ranked against."""

    query: str
    positive: int
    negatives: tuple[int, ...]


@dataclass(slots=True)
class RowHeldOut:
    queries: dict[str, str]
    candidates: dict[str, list[tuple[int, str, float]]]  # query id -> [(row, doc id, retrieval score)]
    qrels: dict[str, dict[str, int]]


@dataclass(slots=True)
class LateTrainResult:
    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    seconds: float = 0.0
    step_seconds: list[float] = field(default_factory=list)


class DocumentStates:
    """The frozen document Transformer's token outputs for the whole corpus, float16, ragged."""

    def __init__(self, states: np.ndarray, offsets: np.ndarray) -> None:
        self.states, self.offsets = states, offsets

    @classmethod
    def compute(cls, doc_dir: Path, texts: Sequence[str], max_length: int, cache: Path | None = None) -> "DocumentStates":
        """Run the frozen Transformer over `texts` once (cached in `cache`, an .npz, when given
        and of the same shape): the one expensive part of training, minutes on a CPU."""
        if cache is not None and cache.is_file():
            data = np.load(cache)
            if data["offsets"].shape[0] == len(texts) + 1 and int(data["max_length"]) == max_length:
                return cls(data["states"], data["offsets"])
        from transformers import AutoModel, AutoTokenizer

        from ranking_build.late_interaction import HiddenStates, encode_document_tokens

        model = HiddenStates(AutoModel.from_pretrained(str(doc_dir), dtype=torch.float32).eval())
        per_doc = encode_document_tokens(
            model, AutoTokenizer.from_pretrained(str(doc_dir)), texts, max_length=max_length,
            progress="document states (frozen encoder)",
        )
        offsets = np.concatenate([[0], np.cumsum([len(d) for d in per_doc])]).astype(np.int64)
        states = np.concatenate(per_doc)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, states=states, offsets=offsets, max_length=max_length)
        return cls(states, offsets)

    def batch(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """[n, longest, hidden] float32 states and their [n, longest] mask."""
        lengths = [int(self.offsets[r + 1] - self.offsets[r]) for r in rows]
        x = np.zeros((len(rows), max(lengths), self.states.shape[1]), dtype=np.float32)
        mask = np.zeros((len(rows), max(lengths)), dtype=np.float32)
        for j, (r, n) in enumerate(zip(rows, lengths)):
            x[j, :n] = self.states[self.offsets[r] : self.offsets[r + 1]]
            mask[j, :n] = 1.0
        return torch.from_numpy(x), torch.from_numpy(mask)


def pca_projection(states: np.ndarray, dim: int, sample: int = 50_000, seed: int = 0) -> torch.Tensor:
    """The top `dim` principal directions of the document token states: the starting point of
    both projections, so the untrained score is already MaxSim over what varies most."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(states), min(sample, len(states)), replace=False)
    x = np.asarray(states[np.sort(pick)], dtype=np.float32)
    _, _, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    return torch.from_numpy(np.ascontiguousarray(vt[:dim]))


def maxsim(query: torch.Tensor, docs: torch.Tensor, doc_mask: torch.Tensor) -> torch.Tensor:
    """query [q, dim] (zero rows at padding), docs [n, tokens, dim] -> [n] ColBERT scores."""
    sims = torch.einsum("qe,nte->nqt", query, docs).masked_fill(doc_mask[:, None, :] == 0, -1e4)
    return sims.max(dim=-1).values.sum(dim=-1)


class LateInteractionTrainer:
    """The query encoder and both projections, trained against the frozen document states."""

    def __init__(self, init: Path, states: DocumentStates, cfg: LateTrainConfig) -> None:
        from transformers import AutoModel, AutoTokenizer

        from ranking_build.late_interaction import TokenEncoder, token_vectors

        self.cfg, self.states, self._token_vectors = cfg, states, token_vectors
        self.tokenizer = AutoTokenizer.from_pretrained(str(init))
        hidden = AutoModel.from_pretrained(str(init), dtype=torch.float32)
        start = pca_projection(states.states, cfg.dim, seed=cfg.seed)
        query_projection = nn.Linear(start.shape[1], cfg.dim, bias=False)
        self.document_projection = nn.Linear(start.shape[1], cfg.dim, bias=False)
        with torch.no_grad():
            query_projection.weight.copy_(start)
            self.document_projection.weight.copy_(start)
        self.query = TokenEncoder(hidden, query_projection)

    def encode_queries(self, texts: Sequence[str]) -> torch.Tensor:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.cfg.query_max_length, return_tensors="pt")
        return self.query(enc["input_ids"], enc["attention_mask"])

    def documents(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask = self.states.batch(rows)
        return self._token_vectors(x, mask, self.document_projection), mask

    def scores(self, query: str, rows: Sequence[int]) -> list[float]:
        with torch.inference_mode():
            q = self.encode_queries([query])[0]
            d, mask = self.documents(rows)
            return maxsim(q, d, mask).tolist()

    def loss(self, batch: Sequence[RowExample], rng: random.Random) -> torch.Tensor:
        """Softmax cross-entropy with the positive first in each example's list."""
        queries = self.encode_queries([ex.query for ex in batch])
        total = torch.zeros(())
        for q, ex in zip(queries, batch):
            negatives = rng.sample(list(ex.negatives), min(self.cfg.negatives, len(ex.negatives)))
            d, mask = self.documents([ex.positive, *negatives])
            logits = maxsim(q, d, mask) / self.cfg.temperature
            total = total + nn.functional.cross_entropy(logits[None], torch.zeros(1, dtype=torch.long))
        return total / len(batch)

    def evaluate(self, heldout: RowHeldOut) -> dict[str, float]:
        from ranking_gateway.core.scoring import interpolate
        from ranking_gateway.evaluation.metrics import aggregate

        self.query.eval()
        alphas = tuple(dict.fromkeys((1.0, *self.cfg.alphas)))
        runs: dict[float, dict[str, dict[str, float]]] = {a: {} for a in alphas}
        first: dict[str, dict[str, float]] = {}
        for qid, text in heldout.queries.items():
            cands = heldout.candidates[qid]
            scores = self.scores(text, [r for r, _, _ in cands])
            for alpha, run in runs.items():
                mixed = interpolate([s for _, _, s in cands], scores, alpha)
                run[qid] = {d: float(m) for (_, d, _), m in zip(cands, mixed)}
            first[qid] = {d: float(len(cands) - i) for i, (_, d, _) in enumerate(cands)}
        self.query.train()
        by_alpha = {a: aggregate(run, heldout.qrels)["ndcg@10"] for a, run in runs.items()}
        best = max(alphas, key=lambda a: (by_alpha[a], a))
        out = {"rerank_ndcg@10": by_alpha[1.0], "retrieval_ndcg@10": aggregate(first, heldout.qrels)["ndcg@10"]}
        out.update({f"alpha={a:g}_ndcg@10": v for a, v in by_alpha.items()})
        out.update(best_alpha=best, best_ndcg=by_alpha[best])
        return out

    def train(self, examples: list[RowExample], heldout: RowHeldOut | None, save_best) -> LateTrainResult:
        from tqdm import tqdm
        from transformers import get_linear_schedule_with_warmup

        cfg = self.cfg
        rng = random.Random(cfg.seed)
        torch.manual_seed(cfg.seed)
        projections = [*self.query.projection.parameters(), *self.document_projection.parameters()]
        optimizer = torch.optim.AdamW(
            [{"params": list(self.query.transformer.parameters()), "lr": cfg.lr},
             {"params": projections, "lr": cfg.projection_lr}],
            weight_decay=0.01,
        )
        per_epoch = -(-len(examples) // cfg.batch_queries)
        total = min(per_epoch * cfg.epochs, cfg.max_steps or per_epoch * cfg.epochs)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * total), total)
        result, best, step, started = LateTrainResult(), -1.0, 0, time.perf_counter()
        if heldout is not None and heldout.queries:
            result.epochs.append({"epoch": 0, **self.evaluate(heldout)})  # the PCA start, untrained
            log.info("epoch 0 (untrained): %s", result.epochs[-1])
        self.query.train()
        for epoch in range(1, cfg.epochs + 1):
            if step >= total:
                break
            order = list(range(len(examples)))
            rng.shuffle(order)
            losses = []
            bar = tqdm(range(0, len(order), cfg.batch_queries), desc=f"epoch {epoch}/{cfg.epochs}", unit="step")
            for start in bar:
                if step >= total:
                    break
                t0 = time.perf_counter()
                loss = self.loss([examples[i] for i in order[start : start + cfg.batch_queries]], rng)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.query.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                step += 1
                losses.append(loss.item())
                result.step_seconds.append(time.perf_counter() - t0)
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
            metrics: dict = {"epoch": epoch, "train_loss": float(np.mean(losses))}
            if heldout is not None and heldout.queries:
                metrics.update(self.evaluate(heldout))
            metrics["seconds"] = round(time.perf_counter() - started, 1)
            result.epochs.append(metrics)
            log.info("epoch %d: %s", epoch, metrics)
            score = metrics.get("best_ndcg", float(epoch))
            if score > best:
                best, result.best_epoch = score, epoch
                save_best(epoch)
        result.seconds = time.perf_counter() - started
        return result

    def save(self, out: Path, document_encoder: str, document_encoder_sha256: str) -> None:
        """A directory `build --reranker` recognises: the query encoder (Hugging Face, fp16), its
        tokenizer, both projections (fp16) and late_interaction.json."""
        from safetensors.torch import save_file

        out.mkdir(parents=True, exist_ok=True)
        transformer = self.query.transformer
        transformer.half().save_pretrained(str(out))
        transformer.float()
        self.tokenizer.save_pretrained(str(out))
        save_file(
            {"query": self.query.projection.weight.detach().half().contiguous(),
             "document": self.document_projection.weight.detach().half().contiguous()},
            str(out / PROJECTIONS_FILE),
        )
        LateInteractionConfig(
            dim=self.cfg.dim,
            query_max_length=self.cfg.query_max_length,
            document_max_length=self.cfg.document_max_length,
            document_encoder=document_encoder,
            document_encoder_sha256=document_encoder_sha256,
        ).write(out)


def write_report(path: Path, cfg: LateTrainConfig, result: LateTrainResult, extra: dict) -> None:
    best = next((e for e in result.epochs if e.get("epoch") == result.best_epoch), {})
    report = {
        "kind": "late-interaction",
        "config": asdict(cfg),
        "seconds": round(result.seconds, 1),
        "steps": len(result.step_seconds),
        "median_step_seconds": round(float(np.median(result.step_seconds)), 4) if result.step_seconds else None,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs,
        "recommended_rerank_alpha": best.get("best_alpha"),
        **extra,
    }
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


__all__ = [
    "BUILTIN_DOCUMENT_ENCODER", "DocumentStates", "LateInteractionTrainer", "LateTrainConfig",
    "RowExample", "RowHeldOut", "write_report",
]
