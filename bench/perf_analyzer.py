"""Triton's own load generator, `perf_analyzer`, against the built models on the embedded Triton.

Measures the reranker (or encoder) directly, without the gateway: throughput and latency by
client concurrency, which shows what the dynamic batcher gains when requests overlap. The input
data are real tokenised (query, document) pairs from the artifacts' corpus.

Needs the `bench` extra and Debian's libb64-0d:
    apt-get install -y libb64-0d && .venv/bin/pip install -e '.[bench]'
    python bench/perf_analyzer.py --artifacts DIR [--model reranker] [--batch 16] [--length 128] [--concurrency 1 2 4 8]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ranking_gateway.core.artifacts import ArtifactPaths
from ranking_gateway.serving.index import DocumentIndex
from ranking_gateway.serving.tokenization import TextTokenizer
from ranking_gateway.serving.triton_server import EmbeddedTriton


def cuda_runtime_libdir() -> str:
    """perf_analyzer links libcudart.so.12 even on CPU; the nvidia-cuda-runtime-cu12 wheel has it."""
    spec = importlib.util.find_spec("nvidia.cuda_runtime")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("install the bench extra: pip install -e '.[bench]' (nvidia-cuda-runtime-cu12)")
    return str(Path(list(spec.submodule_search_locations)[0]) / "lib")


def input_data(paths: ArtifactPaths, model: str, length: int, count: int = 64) -> dict:
    """perf_analyzer's --input-data JSON: real token ids, padded/truncated to `length`."""
    index = DocumentIndex(paths)
    tokenizer = TextTokenizer(paths.tokenizer(model), length)
    docs = [index.documents[i].full_text for i in range(min(count, len(index)))]
    batch = tokenizer.encode_pairs("what is this about", docs) if model == "reranker" else tokenizer.encode(docs)
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if model == "reranker" else [])
    rows = []
    for r in range(len(batch)):
        row = {}
        for name in names:
            values = [0] * length
            seq = getattr(batch, name)[r][:length].tolist()
            values[: len(seq)] = seq
            row[name] = {"content": values, "shape": [length]}
        rows.append(row)
    return {"data": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--model", choices=["reranker", "query_encoder"], default="reranker")
    parser.add_argument("--batch", type=int, default=16, help="pairs per request (the gateway's chunk size)")
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    binary = shutil.which("perf_analyzer")
    if binary is None:
        raise SystemExit("perf_analyzer not found: pip install -e '.[bench]' (tritonclient[all])")
    paths = ArtifactPaths(args.artifacts)
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(filter(None, [cuda_runtime_libdir(), os.environ.get("LD_LIBRARY_PATH")])))
    results = []
    with tempfile.TemporaryDirectory() as tmp, EmbeddedTriton(paths.model_repository) as triton:
        data_file = Path(tmp) / "input.json"
        data_file.write_text(json.dumps(input_data(paths, args.model, args.length)))
        for level in args.concurrency:
            report = Path(tmp) / f"c{level}.csv"
            cmd = [
                binary, "-m", args.model, "-u", triton.grpc_url, "-i", "grpc", "-b", str(args.batch),
                "--input-data", str(data_file), "--concurrency-range", f"{level}:{level}",
                "--measurement-mode", "count_windows", "--measurement-request-count", "24",
                "--max-trials", "6", "--stability-percentage", "30",
                "-f", str(report),
            ]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"perf_analyzer failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
            row = next(csv.DictReader(report.open()))
            results.append(
                {
                    "concurrency": level,
                    "pairs_per_s": float(row["Inferences/Second"]),
                    "p50_ms": float(row["p50 latency"]) / 1000,
                    "p99_ms": float(row["p99 latency"]) / 1000,
                }
            )
            print(f"concurrency {level}: {results[-1]['pairs_per_s']:.1f} pairs/s, p50 {results[-1]['p50_ms']:.1f} ms")
    out = {"model": args.model, "batch": args.batch, "length": args.length, "runs": results}
    (args.out / "perf_analyzer.json").write_text(json.dumps(out, indent=2) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([r["concurrency"] for r in results], [r["pairs_per_s"] for r in results], marker="o")
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel(f"{args.model} inferences / s")
    ax.set_title(f"perf_analyzer, batch {args.batch} x {args.length} tokens")
    fig.tight_layout()
    fig.savefig(args.out / "perf_analyzer.png", dpi=120)
    print(f"wrote {args.out}/perf_analyzer.json and .png")


if __name__ == "__main__":
    main()
