"""The fine-tuning loop: listwise softmax cross-entropy over (1 positive + N negatives) per query.

bf16 autocast on CPU (where native, see `models.native_bf16`) for the forward pass, fp32 master weights, AdamW with linear warmup
and decay, a fixed seed, and a held-out NDCG@10 after each epoch; the best epoch is what is saved.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ranking_gateway.training.examples import TrainingExample

log = logging.getLogger(__name__)


@dataclass(slots=True)
class TrainConfig:
    epochs: int = 2
    batch_queries: int = 4  # examples per step; each contributes 1 + n_negatives pairs
    lr: float = 3e-5
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    max_length: int = 256
    bf16: bool = False  # see native_bf16(): autocast only pays off with native bf16
    seed: int = 13
    max_steps: int | None = None  # cap on the total number of steps (smoke tests, quickstart budget)
    grad_clip: float = 1.0


@dataclass(slots=True)
class HeldOut:
    """Held-out queries with their candidates (doc ids and texts) and judgments."""

    queries: dict[str, str]
    candidates: dict[str, list[tuple[str, str]]]  # query id -> [(doc id, text)] in retrieval order
    qrels: dict[str, dict[str, int]]


@dataclass(slots=True)
class TrainResult:
    step_losses: list[float] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)
    heldout: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    seconds: float = 0.0


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def tokenize_pairs(tokenizer, queries: Sequence[str], docs: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
    """Query first, document second; `longest_first` trims the longer side (the document, nearly
    always) and, unlike `only_second`, does not fail on a query longer than the budget. The gateway
    tokenises pairs the same way (ranking_gateway/tokenization.py)."""
    return tokenizer(
        list(queries), list(docs), padding=True, truncation="longest_first", max_length=max_length, return_tensors="pt"
    )


def pair_logits(model, enc: dict[str, torch.Tensor], bf16: bool) -> torch.Tensor:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(**enc).logits[:, 0]
    return out.float()


@torch.inference_mode()
def score_pairs(model, tokenizer, query: str, docs: Sequence[str], max_length: int, bf16: bool, batch: int = 32) -> list[float]:
    model.eval()
    scores: list[float] = []
    for start in range(0, len(docs), batch):
        chunk = docs[start : start + batch]
        enc = tokenize_pairs(tokenizer, [query] * len(chunk), chunk, max_length)
        scores.extend(pair_logits(model, enc, bf16).tolist())
    return scores


def evaluate_heldout(model, tokenizer, heldout: HeldOut, cfg: TrainConfig) -> dict[str, float]:
    """NDCG@10/MRR@10 of reranking each held-out query's candidates, next to the retrieval order's."""
    from ranking_gateway.evaluation.metrics import aggregate

    rerank_run: dict[str, dict[str, float]] = {}
    retrieval_run: dict[str, dict[str, float]] = {}
    for qid, query in heldout.queries.items():
        cands = heldout.candidates.get(qid, [])
        logits = score_pairs(model, tokenizer, query, [t for _, t in cands], cfg.max_length, cfg.bf16)
        rerank_run[qid] = {d: s for (d, _), s in zip(cands, logits)}
        retrieval_run[qid] = {d: float(len(cands) - i) for i, (d, _) in enumerate(cands)}
    rr, rt = aggregate(rerank_run, heldout.qrels), aggregate(retrieval_run, heldout.qrels)
    return {"rerank_ndcg@10": rr["ndcg@10"], "rerank_mrr@10": rr["mrr@10"], "retrieval_ndcg@10": rt["ndcg@10"]}


def train(
    model,
    tokenizer,
    examples: list[TrainingExample],
    cfg: TrainConfig,
    *,
    heldout: HeldOut | None = None,
    save_best: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train in place; call `save_best(epoch)` whenever the held-out NDCG@10 improves (or every epoch without held-out)."""
    from tqdm import tqdm
    from transformers import get_linear_schedule_with_warmup

    set_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    steps_per_epoch = max(1, (len(examples) + cfg.batch_queries - 1) // cfg.batch_queries)
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    no_decay = ("bias", "LayerNorm.weight", "layernorm", "norm.weight")
    params = [
        {"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(total * cfg.warmup_fraction), total)
    result = TrainResult()
    best = -1.0
    started = time.perf_counter()
    step = 0
    for epoch in range(cfg.epochs):
        if step >= total:
            break
        model.train()
        order = list(range(len(examples)))
        rng.shuffle(order)
        losses: list[float] = []
        bar = tqdm(range(0, len(order), cfg.batch_queries), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step")
        for start in bar:
            if step >= total:
                break
            batch = [examples[i] for i in order[start : start + cfg.batch_queries]]
            loss = listwise_loss(model, tokenizer, batch, cfg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(loss.item())
            result.step_losses.append(losses[-1])
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        result.epoch_losses.append(float(np.mean(losses)) if losses else float("nan"))
        metrics: dict[str, float] = {"epoch": epoch + 1, "train_loss": result.epoch_losses[-1]}
        if heldout is not None and heldout.queries:
            metrics.update(evaluate_heldout(model, tokenizer, heldout, cfg))
            score = metrics["rerank_ndcg@10"]
        else:
            score = float(epoch)  # no held-out slice: the last epoch is the best we know
        metrics["seconds"] = time.perf_counter() - started
        result.heldout.append(metrics)
        log.info("epoch %d: %s", epoch + 1, json.dumps({k: round(v, 4) for k, v in metrics.items()}))
        if score > best:
            best, result.best_epoch = score, epoch + 1
            if save_best is not None:
                save_best(epoch + 1)
    result.seconds = time.perf_counter() - started
    return result


def listwise_loss(model, tokenizer, batch: Sequence[TrainingExample], cfg: TrainConfig) -> torch.Tensor:
    """Softmax cross-entropy with the positive at index 0 of each example's list.

    Lists are padded to the longest in the batch with -inf logits, so an example with fewer mined
    negatives still contributes a proper distribution.
    """
    queries: list[str] = []
    docs: list[str] = []
    sizes: list[int] = []
    for ex in batch:
        group = [ex.positive, *ex.negatives]
        queries += [ex.query] * len(group)
        docs += group
        sizes.append(len(group))
    logits = pair_logits(model, tokenize_pairs(tokenizer, queries, docs, cfg.max_length), cfg.bf16)
    width = max(sizes)
    table = torch.full((len(batch), width), float("-inf"))
    offset = 0
    for row, size in enumerate(sizes):
        table[row, :size] = logits[offset : offset + size]
        offset += size
    return torch.nn.functional.cross_entropy(table, torch.zeros(len(batch), dtype=torch.long))


def write_report(path: Path, cfg: TrainConfig, result: TrainResult, extra: dict) -> None:
    report = {
        "config": asdict(cfg),
        "seconds": round(result.seconds, 1),
        "best_epoch": result.best_epoch,
        "epochs": result.heldout,
        "epoch_losses": result.epoch_losses,
        "step_losses": [round(x, 5) for x in result.step_losses],
        **extra,
    }
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
