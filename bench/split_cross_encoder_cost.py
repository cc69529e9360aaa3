"""What a split cross-encoder (PreTTR-style) would cost at search time on this CPU, measured.

A split cross-encoder precomputes each document's lower Transformer layers at build time and
runs only the upper `k` layers over (query + document) at search time. Its search-time floor is
therefore the upper layers over every reranked pair: this times exactly that, on MiniLM-L6
(the project's reranker backbone), `--pairs` pairs of `--length` tokens, for k = 1..6 joint
layers (k = 6 is the full cross-encoder), torch fp32, all cores, median of `--repeats`. Beside
it, the late-interaction reranker's search-time work: one query encoding (`--query-length`
tokens) and MaxSim over the same pairs' stored token vectors.

    python bench/split_cross_encoder_cost.py --pairs 30 --length 384 --out bench/results/split_cross_encoder_cost.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: allocations and kernel selection
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 1)


def main() -> int:
    from transformers import AutoModel

    from ranking_build.models import default_encoder_path

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=30)
    p.add_argument("--length", type=int, default=384)
    p.add_argument("--query-length", type=int, default=32)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "split_cross_encoder_cost.json")
    args = p.parse_args()

    model = AutoModel.from_pretrained(str(default_encoder_path())).eval()
    layers = model.encoder.layer
    hidden = torch.randn(args.pairs, args.length, model.config.hidden_size)
    # every pair is full length, so no position is masked: the layers run without a mask

    def upper(k: int):
        def run() -> None:
            with torch.inference_mode():
                h = hidden
                for layer in layers[len(layers) - k :]:
                    out = layer(h)
                    h = out[0] if isinstance(out, tuple) else out
        return run

    joint = {k: median_ms(upper(k), args.repeats) for k in range(1, len(layers) + 1)}
    ids = torch.randint(1000, 20000, (1, args.query_length))

    def query() -> None:
        with torch.inference_mode():
            model(input_ids=ids, attention_mask=torch.ones_like(ids))

    rng = np.random.default_rng(0)
    q = rng.standard_normal((args.query_length, args.dim)).astype(np.float32)
    docs = rng.standard_normal((args.pairs * args.length, args.dim)).astype(np.float32)
    bounds = np.arange(0, args.pairs * args.length, args.length)

    def maxsim() -> None:
        np.maximum.reduceat(q @ docs.T, bounds, axis=1).sum(axis=0)

    report = {
        "pairs": args.pairs, "length": args.length, "threads": torch.get_num_threads(),
        "upper_layers_ms": joint,
        "late_interaction_ms": {"query_encoding": median_ms(query, args.repeats), "maxsim": median_ms(maxsim, args.repeats)},
    }
    print(json.dumps(report, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
