"""The propensity-weighted listwise objective both reranker kinds train on in a learning round.

Each click example is a softmax cross-entropy of the clicked document against the request's
unclicked ones, weighted by 1 / the examination propensity of the position it was clicked at
(`ClickExample.weight`): what makes position-biased clicks an unbiased ranking signal. The
model only says how it scores an example's documents.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ranking_gateway.learning.click_examples import ClickExample


def train_listwise(
    examples: Sequence[ClickExample],
    logits_of: Callable[[Sequence[ClickExample]], Sequence[torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    parameters: Iterable[torch.nn.Parameter],
    *,
    epochs: int,
    batch: int,
    eta: float,
    max_weight: float,
    seed: int,
) -> list[float]:
    """Train for `epochs` over `examples` in shuffled batches; `logits_of(batch)` gives each
    example's scores, the clicked document's first. Returns the loss of every step."""
    from tqdm import tqdm

    rng = random.Random(seed)
    params = list(parameters)
    losses: list[float] = []
    for epoch in range(1, epochs + 1):
        order = list(range(len(examples)))
        rng.shuffle(order)
        bar = tqdm(range(0, len(order), batch), desc=f"reranker epoch {epoch}/{epochs}", unit="step")
        for start in bar:
            chunk = [examples[i] for i in order[start : start + batch]]
            total, weights = torch.zeros(()), 0.0
            for ex, logits in zip(chunk, logits_of(chunk)):
                w = ex.weight(eta, max_weight)
                total = total + w * nn.functional.cross_entropy(logits[None], torch.zeros(1, dtype=torch.long))
                weights += w
            loss = total / weights
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            losses.append(float(loss.item()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    return losses
