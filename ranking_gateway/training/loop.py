"""The fine-tuning loop: listwise softmax cross-entropy over (1 positive + N negatives) per query.

Runs on the CPU or a GPU (`TrainConfig.device`); bf16 autocast for the forward pass where it is
fast (a GPU, or a CPU with native bf16, see `models.use_bf16`), fp32 master weights, AdamW with
linear warmup and decay, a fixed seed, and a held-out evaluation after each epoch; the best
epoch is what is saved. The held-out evaluation also sweeps the interpolation weight `alpha`
of `serve --rerank-alpha`, so the weight to serve is chosen on training data, never on test.
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
    device: str = "cpu"
    alphas: tuple[float, ...] = (1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)  # held-out sweep of serve --rerank-alpha


@dataclass(slots=True)
class HeldOut:
    """Held-out queries with their candidates (doc ids, texts, retrieval scores) and judgments."""

    queries: dict[str, str]
    candidates: dict[str, list[tuple[str, str, float]]]  # query id -> [(doc id, text, score)], retrieval order
    qrels: dict[str, dict[str, int]]


@dataclass(slots=True)
class TrainResult:
    step_losses: list[float] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)
    heldout: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    seconds: float = 0.0
    step_seconds: list[float] = field(default_factory=list)  # wall time of each optimiser step


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
    device = next(model.parameters()).device
    enc = {k: v.to(device, non_blocking=True) for k, v in enc.items()}
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(**enc).logits[:, 0]
    return out.float()


@torch.inference_mode()
def score_pairs(model, tokenizer, query: str, docs: Sequence[str], max_length: int, bf16: bool, batch: int = 64) -> list[float]:
    model.eval()
    scores: list[float] = []
    for start in range(0, len(docs), batch):
        chunk = docs[start : start + batch]
        enc = tokenize_pairs(tokenizer, [query] * len(chunk), chunk, max_length)
        scores.extend(pair_logits(model, enc, bf16).cpu().tolist())
    return scores


def evaluate_heldout(model, tokenizer, heldout: HeldOut, cfg: TrainConfig) -> dict[str, float]:
    """NDCG@10/MRR@10 of reranking each held-out query's candidates (the logit alone, and blended
    with the retrieval score at each of `cfg.alphas`), next to the retrieval order's."""
    from ranking_gateway.evaluation.metrics import aggregate
    from ranking_gateway.core.scoring import interpolate

    alphas = tuple(dict.fromkeys((1.0, *cfg.alphas)))  # 1.0: the logit alone, always reported
    blended: dict[float, dict[str, dict[str, float]]] = {a: {} for a in alphas}
    retrieval_run: dict[str, dict[str, float]] = {}
    for qid, query in heldout.queries.items():
        cands = heldout.candidates.get(qid, [])
        logits = score_pairs(model, tokenizer, query, [t for _, t, _ in cands], cfg.max_length, cfg.bf16)
        for alpha, run in blended.items():
            mixed = interpolate([s for _, _, s in cands], logits, alpha)
            run[qid] = {d: float(m) for (d, _, _), m in zip(cands, mixed)}
        retrieval_run[qid] = {d: float(len(cands) - i) for i, (d, _, _) in enumerate(cands)}
    by_alpha = {a: aggregate(run, heldout.qrels) for a, run in blended.items()}
    best_alpha = max(alphas, key=lambda a: (by_alpha[a]["ndcg@10"], a))
    rr, rt = by_alpha[1.0], aggregate(retrieval_run, heldout.qrels)
    out = {"rerank_ndcg@10": rr["ndcg@10"], "rerank_mrr@10": rr["mrr@10"], "retrieval_ndcg@10": rt["ndcg@10"]}
    out.update({f"alpha={a:g}_ndcg@10": by_alpha[a]["ndcg@10"] for a in alphas})
    out.update({"best_alpha": best_alpha, "best_ndcg@10": by_alpha[best_alpha]["ndcg@10"]})
    return out


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
    model.to(cfg.device)
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
            step_started = time.perf_counter()
            batch = [examples[i] for i in order[start : start + cfg.batch_queries]]
            loss = listwise_loss(model, tokenizer, batch, cfg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(loss.item())  # .item() waits for the device: the step time below is real
            result.step_losses.append(losses[-1])
            result.step_seconds.append(time.perf_counter() - step_started)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        result.epoch_losses.append(float(np.mean(losses)) if losses else float("nan"))
        metrics: dict[str, float] = {"epoch": epoch + 1, "train_loss": result.epoch_losses[-1]}
        if heldout is not None and heldout.queries:
            metrics.update(evaluate_heldout(model, tokenizer, heldout, cfg))
            score = metrics["best_ndcg@10"]  # what serving with the best alpha would give
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
    table = torch.full((len(batch), width), float("-inf"), device=logits.device)
    offset = 0
    for row, size in enumerate(sizes):
        table[row, :size] = logits[offset : offset + size]
        offset += size
    return torch.nn.functional.cross_entropy(table, torch.zeros(len(batch), dtype=torch.long, device=logits.device))


def write_report(path: Path, cfg: TrainConfig, result: TrainResult, extra: dict) -> None:
    report = {
        "config": asdict(cfg),
        "seconds": round(result.seconds, 1),
        "steps": len(result.step_losses),
        "median_step_seconds": round(float(np.median(result.step_seconds)), 4) if result.step_seconds else None,
        "best_epoch": result.best_epoch,
        "epochs": result.heldout,
        "epoch_losses": result.epoch_losses,
        "step_losses": [round(x, 5) for x in result.step_losses],
        **extra,
    }
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
