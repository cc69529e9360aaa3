"""Triton's own load generator, `perf_analyzer`, on every model of a build, with real traffic.

Each model is driven the way the gateway drives it, without the gateway: the same tokenizers at
the build's token budgets, the same padding (`TextTokenizer`: each request padded to a multiple of
32 tokens, so the natural mix of widths comes through) and the same rows per request (one query
for the encoders; the gateway's chunk of 16 (query, document) pairs or documents for `reranker`
and `document_token_encoder`). For each concurrency level it records perf_analyzer's client
throughput and p50/p99 latency, the server-side queue and compute times from its verbose CSV, and
Triton's own counters before and after (inferences per execution: how much the dynamic batcher
merged).

Needs `bash scripts/setup.sh --bench` (Debian's libb64-0d and the `bench` extra: the perf_analyzer
binary from tritonclient[all], and libcudart.so.12, which it links even on a CPU):

    python bench/perf_analyzer.py --artifacts runs/scifact-art --queries ../shared/data/scifact/queries.jsonl \\
        --out bench/results/perf_analyzer/scifact_late_interaction.json
    python bench/perf_analyzer.py --artifacts runs/pa-small --queries ../shared/data/scifact/queries.jsonl \\
        --corpus ../shared/data/scifact/corpus.jsonl --out bench/results/perf_analyzer/small_cross_encoder.json
    python bench/perf_analyzer.py --artifacts DIR --url HOST:8001     # a Triton already running (gRPC)
    python bench/perf_analyzer.py --artifacts artifacts --url localhost:8001  # compose.yaml's Triton
    python bench/perf_analyzer.py --table REPORT.json                  # the README's table of a report

`--artifacts` is needed in both forms: the tokenizers, the corpus and the model list come from it.
With `--url` no Triton is started here: the models' readiness, loaded configs and statistics all
come from the one at that address (it must serve the same build).
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import importlib.util
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ranking_gateway.core.artifacts import ArtifactPaths, Manifest
from ranking_gateway.core.config import GatewaySettings
from ranking_gateway.core.contract import DOCUMENT_TOKENS, ENCODER, QUERY_TOKENS, RERANKER, ModelContract
from ranking_gateway.serving.tokenization import TextTokenizer, TokenBatch

DEFAULT_CONCURRENCY = (1, 2, 4, 8, 16, 32)
# perf_analyzer's verbose CSV: our name -> its column (microseconds, averaged per request)
SERVER_COLUMNS = {
    "queue_ms": "Server Queue",
    "compute_input_ms": "Server Compute Input",
    "compute_infer_ms": "Server Compute Infer",
    "compute_output_ms": "Server Compute Output",
}
LATENCY_COLUMNS = {"p50_ms": "p50 latency", "p90_ms": "p90 latency", "p95_ms": "p95 latency", "p99_ms": "p99 latency",
                   "avg_ms": "Avg latency"}


@dataclass(frozen=True)
class ModelLoad:
    """One model as the gateway calls it: its tensors, its token budget, rows per request."""

    contract: ModelContract
    max_length: int
    rows: int  # perf_analyzer's -b: 1 query, or the gateway's chunk of pairs / documents
    text: str  # "queries", "pairs" or "documents": what its requests hold


def model_loads(manifest: Manifest, chunk: int) -> list[ModelLoad]:
    """Every Triton model of the build, from its manifest (what `serve` loads)."""
    loads = [ModelLoad(ENCODER, manifest.encoder.max_length, 1, "queries")]
    reranker = manifest.reranker
    if reranker is not None and reranker.kind == "late-interaction":
        loads.append(ModelLoad(QUERY_TOKENS, reranker.max_length, 1, "queries"))
        if manifest.document_token_encoder is not None:
            loads.append(ModelLoad(DOCUMENT_TOKENS, manifest.document_token_encoder.max_length, chunk, "documents"))
    elif reranker is not None:
        loads.append(ModelLoad(RERANKER, reranker.max_length, chunk, "pairs"))
    return loads


def read_texts(path: Path, field: str) -> list[str]:
    """One field of a BEIR JSON-lines file (queries' `text`; a corpus' `title` + `text`)."""
    texts = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                obj = json.loads(line)
                if field == "document":
                    title, text = obj.get("title") or "", obj.get("text") or ""
                    texts.append(f"{title}. {text}" if title else text)
                else:
                    texts.append(obj.get(field) or "")
    return [t for t in texts if t.strip()]


def request_batches(
    load: ModelLoad, tokenizer: TextTokenizer, queries: Sequence[str], documents: Sequence[str], requests: int,
    seed: int = 0,
) -> list[TokenBatch]:
    """`requests` requests for one model, each tokenised and padded as the gateway would send it:
    a query alone (encoders), or a chunk of `rows` pairs of one query with corpus documents, or of
    documents, trimmed to its longest row rounded up to the 32-token bucket (`TokenBatch.rows`)."""
    rng = random.Random(seed)
    batches = []
    for i in range(requests):
        query = queries[i % len(queries)]
        if load.text == "queries":
            batch = tokenizer.encode([query])
        elif load.text == "pairs":
            batch = tokenizer.encode_pairs(query, rng.choices(documents, k=load.rows))
        else:
            batch = tokenizer.encode(rng.choices(documents, k=load.rows))
        batches.append(batch.rows(0, load.rows))
    return batches


def pad_to(batch: TokenBatch, width: int) -> TokenBatch:
    """The batch right-padded with zeros (pad id, mask 0, type 0) to `width` tokens."""
    extra = width - batch.input_ids.shape[1]
    pad = lambda a: np.pad(a, ((0, 0), (0, extra)))  # noqa: E731
    return TokenBatch(pad(batch.input_ids), pad(batch.attention_mask), pad(batch.token_type_ids))


def sendable(batches: list[TokenBatch], rows: int) -> list[TokenBatch]:
    """The requests as perf_analyzer can send them. An entry of its --input-data is one row with
    its own `shape`; a request of -b rows takes -b consecutive entries, which must share that
    shape. perf_analyzer 2.51 checks this at start-up for every run of -b consecutive entries, not
    only those a request starts at ("can not batch tensors with different shapes together"), so
    with -b > 1 every entry needs the same width: multi-row requests are padded to the widest.
    Single-row requests (the encoders) keep each its own width."""
    if rows == 1:
        return batches
    widest = max(int(b.input_ids.shape[1]) for b in batches)
    return [pad_to(b, widest) for b in batches]


def input_data(batches: Sequence[TokenBatch], names: Sequence[str]) -> dict[str, Any]:
    """perf_analyzer's --input-data JSON: one entry a row, its `shape` without the batch dimension
    (so no `--shape` flag is needed); perf_analyzer steps through them -b entries a request."""
    entries = []
    for batch in batches:
        for r in range(len(batch)):
            entries.append(
                {name: {"content": getattr(batch, name)[r].tolist(), "shape": [int(batch.input_ids.shape[1])]}
                 for name in names}
            )
    return {"data": entries}


def width_counts(batches: Sequence[TokenBatch]) -> dict[str, int]:
    """Requests by padded width: the mix of shapes the data sends."""
    return {str(w): n for w, n in sorted(Counter(int(b.input_ids.shape[1]) for b in batches).items())}


def parse_csv(path: Path) -> dict[str, float]:
    """The one concurrency level of a perf_analyzer `-f` report: throughput, client latency
    percentiles and the server's average queue and compute times, in ms."""
    with path.open(newline="") as fh:
        row = next(csv.DictReader(fh))
    out = {"concurrency": int(row["Concurrency"]), "inferences_per_s": float(row["Inferences/Second"])}
    for name, column in {**LATENCY_COLUMNS, **SERVER_COLUMNS}.items():
        if column in row and row[column] != "":
            out[name] = float(row[column]) / 1000
    return out


def profile_summary(path: Path, rows: int) -> dict[str, float]:
    """Throughput and latency percentiles from perf_analyzer's per-request export. In
    --request-count mode its CSV throughput divides by a duration counted in whole seconds (384
    requests read as 127.9/s or 191.9/s), so the requests' own timestamps are used instead."""
    requests = json.loads(path.read_text())["experiments"][-1]["requests"]
    starts = [r["timestamp"] for r in requests]
    ends = [r["response_timestamps"][-1] for r in requests]
    latencies = sorted((e - s) / 1e6 for s, e in zip(starts, ends))  # ns -> ms
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    return {
        "inferences_per_s": round(rows * len(requests) / ((max(ends) - min(starts)) / 1e9), 2),
        "p50_ms": pick(0.50), "p90_ms": pick(0.90), "p95_ms": pick(0.95), "p99_ms": pick(0.99),
        "avg_ms": sum(latencies) / len(latencies),
    }


def _count(stats: dict[str, Any], *keys: str) -> int:
    """An int64 counter from Triton's statistics JSON (protobuf writes them as strings; absent is 0)."""
    value: Any = stats
    for key in keys:
        value = value.get(key, {}) if isinstance(value, dict) else {}
    return int(value or 0)


def stats_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What one level did on the server, from Triton's counters before and after it: requests,
    inferences (rows) and executions (model calls), so how much the batcher merged, and the
    rows per execution it ran."""
    success = ("inference_stats", "success", "count")
    requests = _count(after, *success) - _count(before, *success)
    inferences = _count(after, "inference_count") - _count(before, "inference_count")
    executions = _count(after, "execution_count") - _count(before, "execution_count")
    sizes_before = {int(b["batch_size"]): _count(b, "compute_infer", "count") for b in before.get("batch_stats", [])}
    sizes = {}
    for b in after.get("batch_stats", []):
        n = _count(b, "compute_infer", "count") - sizes_before.get(int(b["batch_size"]), 0)
        if n:
            sizes[str(b["batch_size"])] = n
    return {
        "requests": requests,
        "inferences": inferences,
        "executions": executions,
        "inferences_per_execution": round(inferences / executions, 2) if executions else None,
        "requests_per_execution": round(requests / executions, 2) if executions else None,
        "executions_by_batch_size": dict(sorted(sizes.items(), key=lambda kv: int(kv[0]))),
    }


def window_requests(concurrency: int, rows: int, window_rows: int) -> int:
    """Requests per measurement window: at least `window_rows` rows, so a fast model's window is
    not a few milliseconds of noise, and one per client, so a slow model's window at 32 clients
    is one round of them rather than minutes."""
    return max(-(-window_rows // rows), concurrency)


def pa_command(
    binary: str, url: str, load: ModelLoad, data_file: Path, concurrency: int, report: Path, args: argparse.Namespace,
    stable: bool = True,
) -> list[str]:
    """perf_analyzer for one model at one concurrency: count windows and a small stability bound
    on throughput and p50 (the mean swings with Triton's occasional 500 ms batcher waits), or
    (`stable=False`) one fixed measurement of two windows' requests."""
    window = window_requests(concurrency, load.rows, args.window_rows)
    measure = (
        ["--measurement-mode", "count_windows", "--measurement-request-count", str(window),
         "--stability-percentage", str(args.stability), "--max-trials", str(args.max_trials),
         "--percentile", "50"]
        if stable else ["--request-count", str(2 * window), "--profile-export-file", str(report.with_suffix(".json"))]
    )
    return [
        binary, "-m", load.contract.name, "-u", url, "-i", "grpc", "-b", str(load.rows),
        "--input-data", str(data_file), "--concurrency-range", f"{concurrency}:{concurrency}",
        *measure, "-f", str(report), "--verbose-csv",
    ]


def cuda_runtime_libdir() -> str:
    """perf_analyzer links libcudart.so.12 even on CPU; the nvidia-cuda-runtime-cu12 wheel has it."""
    try:
        spec = importlib.util.find_spec("nvidia.cuda_runtime")
    except ModuleNotFoundError:  # no `nvidia` namespace at all: the bench extra is not installed
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("install the bench extra: bash scripts/setup.sh --bench (nvidia-cuda-runtime-cu12)")
    return str(Path(list(spec.submodule_search_locations)[0]) / "lib")


def perf_analyzer_binary() -> str:
    """The perf_analyzer beside this interpreter (the venv's), else on PATH."""
    local = Path(sys.executable).parent / "perf_analyzer"
    found = str(local) if local.exists() else shutil.which("perf_analyzer")
    if found is None:
        raise SystemExit("perf_analyzer not found: bash scripts/setup.sh --bench (tritonclient[all])")
    return found


def pa_environment() -> dict[str, str]:
    libs = [cuda_runtime_libdir(), os.environ.get("LD_LIBRARY_PATH", "")]
    return dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(filter(None, libs)))


def served_models(client: Any) -> set[str]:
    """Models Triton's repository index says are READY."""
    index = client.get_model_repository_index(as_json=True).get("models", [])
    return {m["name"] for m in index if m.get("state") == "READY"}


def model_settings(client: Any, name: str) -> dict[str, Any]:
    """The serving settings a run depends on, from the loaded config (not the template)."""
    config = client.get_model_config(name, as_json=True)["config"]
    batching = config.get("dynamic_batching", {})
    params = {k: v.get("string_value") for k, v in config.get("parameters", {}).items()}
    return {
        "max_batch_size": config.get("max_batch_size"),
        "preferred_batch_size": batching.get("preferred_batch_size"),
        "max_queue_delay_us": int(batching.get("max_queue_delay_microseconds", 0)),
        "instances": sum(int(g.get("count", 1)) for g in config.get("instance_group", [])),
        "runtime": params.get("runtime"),
        "threads": params.get("threads"),
    }


def model_stats(client: Any, name: str) -> dict[str, Any]:
    return client.get_inference_statistics(model_name=name, as_json=True)["model_stats"][0]


def run_level(
    binary: str, url: str, load: ModelLoad, data_file: Path, concurrency: int, workdir: Path,
    args: argparse.Namespace, client: Any,
) -> dict[str, Any]:
    """One perf_analyzer run, and its CSV row with Triton's counters over the same span. A level
    that does not stabilise within --max-trials windows (a shared 2-core machine) is measured once
    more over a fixed request count and marked `stable: false`, rather than left out."""
    report = workdir / f"{load.contract.name}_c{concurrency}.csv"
    load_avg = round(os.getloadavg()[0], 2)  # the machine is shared: what else ran shows here
    before = model_stats(client, load.contract.name)
    started = time.monotonic()
    stable = True
    proc = _perf_analyzer(pa_command(binary, url, load, data_file, concurrency, report, args))
    if proc.returncode != 0 and "stable measurement" in proc.stdout + proc.stderr:
        stable = False
        proc = _perf_analyzer(pa_command(binary, url, load, data_file, concurrency, report, args, stable=False))
    seconds = round(time.monotonic() - started, 1)
    after = model_stats(client, load.contract.name)
    if proc.returncode != 0 or not report.exists():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        return {"concurrency": concurrency, "error": " / ".join(tail), "seconds": seconds}
    row = parse_csv(report)
    if not stable:
        row.update(profile_summary(report.with_suffix(".json"), load.rows))
    row["requests_per_s"] = round(row["inferences_per_s"] / load.rows, 2)
    return {**row, "stable": stable, "seconds": seconds, "load_avg_before": load_avg,
            "triton": stats_delta(before, after)}


def _perf_analyzer(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=pa_environment(), capture_output=True, text=True)


def measure_model(
    binary: str, url: str, load: ModelLoad, batches: list[TokenBatch], workdir: Path, args: argparse.Namespace,
    client: Any,
) -> dict[str, Any]:
    data_file = workdir / f"{load.contract.name}.json"
    sent = sendable(batches, load.rows)
    data_file.write_text(json.dumps(input_data(sent, load.contract.inputs)))
    levels = []
    for level in args.concurrency:
        result = run_level(binary, url, load, data_file, level, workdir, args, client)
        levels.append(result)
        print(summary_line(load.contract.name, result), flush=True)
    return {
        "model": load.contract.name,
        "rows_per_request": load.rows,
        "max_length": load.max_length,
        "requests_in_data": len(batches),
        "requests_by_width": width_counts(batches),  # as the gateway pads them
        "requests_sent_by_width": width_counts(sent),  # as perf_analyzer sends them (`sendable`)
        "settings": model_settings(client, load.contract.name),
        "levels": levels,
    }


def summary_line(model: str, r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{model} c={r['concurrency']}: failed: {r['error']}"
    t = r["triton"]
    mark = "" if r["stable"] else " (unstable)"
    return (
        f"{model} c={r['concurrency']}{mark}: {r['inferences_per_s']:.1f} inf/s ({r['requests_per_s']:.1f} req/s), "
        f"p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms, server queue {r.get('queue_ms', 0):.1f} ms "
        f"compute {server_compute_ms(r):.1f} ms, {t['inferences_per_execution']} inf/exec ({r['seconds']} s)"
    )


def server_compute_ms(r: dict[str, Any]) -> float:
    """The server's compute time per request: input, inference and output together."""
    return sum(r.get(k, 0.0) for k in ("compute_input_ms", "compute_infer_ms", "compute_output_ms"))


def markdown_table(report: dict[str, Any]) -> str:
    """The README's table, made from a report so that every figure in it comes from the file."""
    lines = [
        "| model | concurrency | inferences/s | requests/s | p50 / p99 ms | server queue / compute ms "
        "| inferences per execution |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for m in report["models"]:
        for r in m["levels"]:
            if "error" in r:
                lines.append(f"| `{m['model']}` | {r['concurrency']} | failed | | | | |")
                continue
            mark = "" if r["stable"] else " *"
            lines.append(
                f"| `{m['model']}` | {r['concurrency']}{mark} | {r['inferences_per_s']:,.1f} "
                f"| {r['requests_per_s']:,.1f} | {r['p50_ms']:,.0f} / {r['p99_ms']:,.0f} "
                f"| {r.get('queue_ms', 0):,.1f} / {server_compute_ms(r):,.1f} "
                f"| {r['triton']['inferences_per_execution']} |"
            )
    return "\n".join(lines)


def plot(report: dict[str, Any], png: Path) -> None:
    """Per model: throughput by concurrency, and p50/p99 over the server's queue + compute."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = report["models"]
    fig, axes = plt.subplots(len(models), 2, figsize=(10, 3.2 * len(models)), squeeze=False)
    for (ax_t, ax_l), m in zip(axes, models):
        ok = [r for r in m["levels"] if "error" not in r]
        x = [str(r["concurrency"]) for r in ok]
        ax_t.plot(x, [r["inferences_per_s"] for r in ok], marker="o")
        ax_t.set_ylabel("inferences / s")
        ax_t.set_title(f"{m['model']} ({m['rows_per_request']} row(s) a request)")
        queue = [r.get("queue_ms", 0.0) for r in ok]
        compute = [server_compute_ms(r) for r in ok]
        ax_l.bar(x, queue, label="server queue", color="tab:orange")
        ax_l.bar(x, compute, bottom=queue, label="server compute", color="tab:blue")
        ax_l.plot(x, [r["p50_ms"] for r in ok], marker="o", color="black", label="client p50")
        ax_l.plot(x, [r["p99_ms"] for r in ok], marker="^", color="tab:red", label="client p99")
        ax_l.set_yscale("log")
        ax_l.set_ylabel("ms")
        ax_l.legend(fontsize=7)
        for ax in (ax_t, ax_l):
            ax.set_xlabel("concurrent requests")
    fig.suptitle(f"perf_analyzer, {report['artifacts']} ({report['machine']['cpus']} CPUs)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpus": os.cpu_count(), "cpu": cpu, "tritonclient": importlib.metadata.version("tritonclient")}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, help="the build: its models, tokenizers, corpus (to measure)")
    parser.add_argument("--url", help="a running Triton's gRPC HOST:PORT (default: start the embedded one)")
    parser.add_argument("--queries", type=Path, help="BEIR queries.jsonl (default: the corpus' titles)")
    parser.add_argument("--corpus", type=Path, help="BEIR corpus.jsonl for the documents (default: the build's)")
    parser.add_argument("--models", nargs="+", help="a subset of the build's models")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(DEFAULT_CONCURRENCY))
    parser.add_argument("--requests", type=int, default=256, help="distinct requests in each model's data")
    parser.add_argument("--window-rows", type=int, default=256, help="at least this many rows a window")
    parser.add_argument("--stability", type=int, default=25, help="perf_analyzer's --stability-percentage")
    parser.add_argument("--max-trials", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("bench/results/perf_analyzer/perf_analyzer.json"))
    parser.add_argument("--table", type=Path, help="only print the markdown table of this report")
    return parser.parse_args(argv)


def texts(args: argparse.Namespace, paths: ArtifactPaths) -> tuple[list[str], list[str]]:
    """(queries, documents): the queries file's, else the corpus titles; the corpus' documents."""
    documents = read_texts(args.corpus or paths.documents, "document")
    titles = read_texts(args.corpus or paths.documents, "title")
    queries = read_texts(args.queries, "text") if args.queries else titles
    if not queries:
        raise SystemExit("no queries: pass --queries FILE (the corpus has no titles)")
    return queries, documents


def main(argv: Sequence[str] | None = None) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from ranking_gateway.serving.triton_server import EmbeddedTriton

    args = parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(args.table.read_text())))
        return
    if args.artifacts is None:
        raise SystemExit("--artifacts DIR is required (the tokenizers, corpus and model list come from it)")
    paths = ArtifactPaths(args.artifacts)
    manifest = Manifest.read(paths.root)
    loads = [m for m in model_loads(manifest, GatewaySettings.rerank_chunk_size)
             if not args.models or m.contract.name in args.models]
    queries, documents = texts(args, paths)
    binary = perf_analyzer_binary()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    server = nullcontext(None) if args.url else EmbeddedTriton(paths.model_repository)
    with server as triton, tempfile.TemporaryDirectory() as tmp:
        url = args.url or triton.grpc_url
        client = grpcclient.InferenceServerClient(url)
        try:
            ready = served_models(client)
        except InferenceServerException as exc:
            raise SystemExit(f"no Triton answers gRPC on {url}: {exc}") from None
        results = []
        for load in loads:
            if load.contract.name not in ready:
                print(f"{load.contract.name}: not READY on {url}, skipped", flush=True)
                continue
            tokenizer = TextTokenizer(paths.tokenizer(load.contract.name), load.max_length)
            batches = request_batches(load, tokenizer, queries, documents, args.requests)
            results.append(measure_model(binary, url, load, batches, Path(tmp), args, client))
    report = {
        "artifacts": str(args.artifacts),
        "url": args.url or "embedded",
        "queries": str(args.queries) if args.queries else "corpus titles",
        "corpus": str(args.corpus or paths.documents),
        "machine": machine(),
        "perf_analyzer": {"measurement_mode": "count_windows", "window_rows": args.window_rows,
                          "stability_percentage": args.stability, "stability_percentile": 50,
                          "max_trials": args.max_trials},
        "models": results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out.with_suffix(".png"))
    print(markdown_table(report))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
