"""Which CPU runtime should the CPU target's Triton models use? Measure them in one run.

Runs the serving code itself (model_repository/reranker/model.py over common/cpu_runtime.py, as
the python backend loads them) for each runtime on the same reranker-shaped inputs, and reports
the median latency per batch, the ratio to ONNX Runtime fp32 (the baseline), and the max score
deviation from PyTorch fp32. Writes JSON and a PNG.

    python bench/cpu_runtimes.py --out bench/results [--batch 32] [--length 128] [--repeats 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ranking_build.model_repository import copy_model_code, load_cpu_model
from ranking_build.models import CrossEncoder, default_encoder_path
from ranking_build.onnx_export import export_onnx, quantize_int8
from ranking_gateway.core.contract import RERANKER

ROOT = Path(__file__).resolve().parents[1]
RUNTIMES = ("onnx_fp32", "onnx_int8", "torch_fp32", "torch_bf16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results")
    parser.add_argument("--reranker", type=Path, help="HF sequence-classification dir (default: MiniLM + new head)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        version = Path(tmp) / RERANKER.name / "1"
        version.mkdir(parents=True)
        copy_model_code(RERANKER, version)
        if args.reranker:
            module = CrossEncoder(args.reranker)
        else:
            import torch
            from transformers import AutoModelForSequenceClassification

            torch.manual_seed(0)
            hf = AutoModelForSequenceClassification.from_pretrained(str(default_encoder_path()), num_labels=1)
            hf.save_pretrained(str(version / "src"))
            module = CrossEncoder(version / "src")
        module.transformer.save_pretrained(str(version / "hf"))
        export_onnx(module, RERANKER, version / "model.onnx")
        quantize_int8(version / "model.onnx", version / "model.int8.onnx")

        rng = np.random.default_rng(0)
        inputs = {
            "input_ids": rng.integers(1000, 29000, (args.batch, args.length), dtype=np.int64),
            "attention_mask": np.ones((args.batch, args.length), dtype=np.int64),
            "token_type_ids": np.concatenate(
                [np.zeros((args.batch, 24), np.int64), np.ones((args.batch, args.length - 24), np.int64)], axis=1
            ),
        }
        inputs["input_ids"][:, 0] = 101
        results, outputs = {}, {}
        for runtime in RUNTIMES:
            model = load_cpu_model(version, RERANKER, runtime)  # warms up on load
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                outputs[runtime] = model.run(inputs)
                times.append((time.perf_counter() - t0) * 1000)
            results[runtime] = {"median_ms": statistics.median(times), "p90_ms": float(np.percentile(times, 90))}
            print(f"{runtime:11s} median {results[runtime]['median_ms']:8.1f} ms", file=sys.stderr)
            del model

    base = results["onnx_fp32"]["median_ms"]
    reference = outputs["torch_fp32"].reshape(-1)
    for runtime, r in results.items():
        r["speedup_vs_onnx_fp32"] = base / r["median_ms"]
        r["max_abs_logit_diff_vs_torch_fp32"] = float(np.max(np.abs(outputs[runtime].reshape(-1) - reference)))
    report = {"batch": args.batch, "length": args.length, "repeats": args.repeats, "runtimes": results}
    (args.out / "cpu_runtimes.json").write_text(json.dumps(report, indent=2) + "\n")

    print(f"\nreranker forward, batch {args.batch} x {args.length} tokens, median of {args.repeats}")
    print(f"{'runtime':12s} {'median ms':>10s} {'vs onnx_fp32':>13s} {'max |Δlogit|':>13s}")
    for runtime, r in results.items():
        print(
            f"{runtime:12s} {r['median_ms']:10.1f} {r['speedup_vs_onnx_fp32']:12.2f}x "
            f"{r['max_abs_logit_diff_vs_torch_fp32']:13.4f}"
        )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(list(results), [r["median_ms"] for r in results.values()], color="#4C72B0")
    ax.set_ylabel("median latency per batch (ms)")
    ax.set_title(f"Reranker forward on CPU, {args.batch}×{args.length} tokens")
    fig.tight_layout()
    fig.savefig(args.out / "cpu_runtimes.png", dpi=120)
    print(f"wrote {args.out}/cpu_runtimes.json and .png")


if __name__ == "__main__":
    main()
