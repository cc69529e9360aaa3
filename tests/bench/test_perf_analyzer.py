"""The pure parts of bench/perf_analyzer.py: which models a build has, the requests and the
--input-data JSON built from real tokenised text, the CSV and Triton statistics it reads. The
last test runs the real perf_analyzer on its own `--help` only where `setup.sh --bench` installed it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ranking_gateway.core.artifacts import Manifest, ModelEntry
from ranking_gateway.serving.tokenization import TokenBatch
from tests.bench.bench_module import load_bench

pa = load_bench("perf_analyzer")


def _entry(max_length: int, kind: str = "cross-encoder") -> ModelEntry:
    return ModelEntry("src", "sha", "onnx", max_length, 0.0, 384, kind=kind)


def _manifest(reranker: ModelEntry | None, documents: ModelEntry | None = None) -> Manifest:
    return Manifest("cpu", "onnx_int8", "c.jsonl", 3, 384, "flat", "v", _entry(64), reranker,
                    document_token_encoder=documents)


class FakeTokenizer:
    """Stands in for TextTokenizer: one token a word, padded to the 32-token bucket."""

    def _batch(self, lengths: list[int]) -> TokenBatch:
        width = max(32, -(-max(lengths) // 32) * 32)
        ids = np.zeros((len(lengths), width), dtype=np.int64)
        for r, n in enumerate(lengths):
            ids[r, :n] = np.arange(1, n + 1)
        return TokenBatch(ids, (ids > 0).astype(np.int64), np.zeros_like(ids))

    def encode(self, texts: list[str]) -> TokenBatch:
        return self._batch([len(t.split()) for t in texts])

    def encode_pairs(self, query: str, documents: list[str]) -> TokenBatch:
        return self._batch([len(query.split()) + len(d.split()) for d in documents])


def test_model_loads_follow_the_reranker_kind() -> None:
    names = lambda m: [(x.contract.name, x.rows, x.max_length) for x in pa.model_loads(m, 16)]  # noqa: E731
    assert names(_manifest(None)) == [("query_encoder", 1, 64)]
    assert names(_manifest(_entry(256))) == [("query_encoder", 1, 64), ("reranker", 16, 256)]
    late = _manifest(_entry(32, "late-interaction"), _entry(512, "late-interaction"))
    assert names(late) == [("query_encoder", 1, 64), ("query_token_encoder", 1, 32), ("document_token_encoder", 16, 512)]


def test_encoder_requests_keep_their_own_widths() -> None:
    load = pa.model_loads(_manifest(None), 16)[0]
    queries = ["short query", " ".join(["word"] * 40)]
    batches = pa.request_batches(load, FakeTokenizer(), queries, [], requests=4)
    assert [b.input_ids.shape for b in batches] == [(1, 32), (1, 64), (1, 32), (1, 64)]
    assert pa.width_counts(batches) == {"32": 2, "64": 2}
    data = pa.input_data(pa.sendable(batches, 1), load.contract.inputs)
    assert [e["input_ids"]["shape"] for e in data["data"]] == [[32], [64], [32], [64]]
    assert set(data["data"][0]) == {"input_ids", "attention_mask"}
    assert data["data"][0]["input_ids"]["content"][:3] == [1, 2, 0]


def test_pair_requests_are_padded_to_one_width_for_perf_analyzer() -> None:
    load = pa.ModelLoad(pa.RERANKER, 256, rows=2, text="pairs")
    documents = ["a b", " ".join(["w"] * 50)]
    batches = pa.request_batches(load, FakeTokenizer(), ["q"], documents, requests=6, seed=1)
    assert all(len(b) == 2 for b in batches)
    sent = pa.sendable(batches, load.rows)
    assert {b.input_ids.shape[1] for b in sent} == {max(b.input_ids.shape[1] for b in batches)}
    data = pa.input_data(sent, load.contract.inputs)["data"]
    assert len(data) == 12  # one entry a row; perf_analyzer takes -b consecutive ones a request
    assert set(data[0]) == {"input_ids", "attention_mask", "token_type_ids"}
    for b, s in zip(batches, sent):  # padding only adds masked zeros
        assert s.attention_mask.sum() == b.attention_mask.sum()


CSV = """Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency,Avg latency,request/response,response wait
4,123.5,10,400,2500,40,15000,300,5,19000,25000,27000,30000,20000,20,19800
"""


def test_parse_csv_reads_microseconds_as_ms(tmp_path: Path) -> None:
    path = tmp_path / "c4.csv"
    path.write_text(CSV)
    row = pa.parse_csv(path)
    assert row["concurrency"] == 4 and row["inferences_per_s"] == 123.5
    assert row["p50_ms"] == 19.0 and row["p99_ms"] == 30.0
    assert row["queue_ms"] == 2.5 and row["compute_infer_ms"] == 15.0 and row["compute_output_ms"] == 0.3


def test_stats_delta_counts_what_the_batcher_merged() -> None:
    before = {"inference_count": "10", "execution_count": "10", "inference_stats": {"success": {"count": "10"}},
              "batch_stats": [{"batch_size": "1", "compute_infer": {"count": "10"}}]}
    after = {"inference_count": "74", "execution_count": "18", "inference_stats": {"success": {"count": "26"}},
             "batch_stats": [{"batch_size": "1", "compute_infer": {"count": "12"}},
                             {"batch_size": "16", "compute_infer": {"count": "2"}},
                             {"batch_size": "5", "compute_infer": {"count": "4"}}]}
    d = pa.stats_delta(before, after)
    assert (d["requests"], d["inferences"], d["executions"]) == (16, 64, 8)
    assert d["inferences_per_execution"] == 8.0 and d["requests_per_execution"] == 2.0
    assert d["executions_by_batch_size"] == {"1": 2, "5": 4, "16": 2}


def test_window_requests_cover_rows_and_every_client() -> None:
    assert pa.window_requests(1, rows=1, window_rows=128) == 128
    assert pa.window_requests(1, rows=16, window_rows=128) == 8
    assert pa.window_requests(32, rows=16, window_rows=128) == 32


def test_perf_analyzer_binary_runs_where_installed() -> None:
    """The installed binary finds its libraries (libb64, libcudart from the bench extra)."""
    try:
        binary, env = pa.perf_analyzer_binary(), pa.pa_environment()
    except SystemExit as exc:
        pytest.skip(f"perf_analyzer is not installed (bash scripts/setup.sh --bench): {exc}")
    proc = subprocess.run([binary, "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert "--input-data" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-500:]


def test_profile_summary_times_the_requests_themselves(tmp_path: Path) -> None:
    ms = 1_000_000  # perf_analyzer's timestamps are in ns
    requests = [{"timestamp": i * 10 * ms, "response_timestamps": [i * 10 * ms + (i + 1) * ms]} for i in range(100)]
    path = tmp_path / "c1.json"
    path.write_text(json.dumps({"experiments": [{"requests": requests}]}))
    s = pa.profile_summary(path, rows=16)
    assert s["inferences_per_s"] == round(16 * 100 / 1.090, 2)  # first send 0 ms, last answer 1,090 ms
    assert s["p50_ms"] == 51.0 and s["p99_ms"] == 100.0


def test_url_measures_an_external_triton_and_starts_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With --url (e.g. compose.yaml's Triton) everything goes to that server: the readiness and
    config lookups, perf_analyzer's -u; no embedded Triton is started."""
    from types import SimpleNamespace

    import tritonclient.grpc

    embedded = SimpleNamespace(EmbeddedTriton=lambda *a, **k: pytest.fail("started an embedded Triton"))
    monkeypatch.setitem(sys.modules, "ranking_gateway.serving.triton_server", embedded)
    clients: list[str] = []

    class FakeClient:
        def __init__(self, url: str) -> None:
            clients.append(url)

        def get_model_repository_index(self, as_json: bool) -> dict:
            return {"models": [{"name": "query_encoder", "state": "READY"}]}

    measured = []

    def measure_model(binary, url, load, batches, workdir, args, client):  # noqa: ANN001, ANN202
        measured.append((url, load.contract.name, type(client)))
        return {"model": load.contract.name, "levels": []}

    monkeypatch.setattr(tritonclient.grpc, "InferenceServerClient", FakeClient)
    monkeypatch.setattr(pa, "Manifest", SimpleNamespace(read=lambda root: _manifest(None)))
    monkeypatch.setattr(pa, "texts", lambda args, paths: (["a query"], ["a document"]))
    monkeypatch.setattr(pa, "TextTokenizer", lambda path, max_length: FakeTokenizer())
    monkeypatch.setattr(pa, "perf_analyzer_binary", lambda: "perf_analyzer")
    monkeypatch.setattr(pa, "measure_model", measure_model)
    monkeypatch.setattr(pa, "plot", lambda report, png: None)
    out = tmp_path / "report.json"
    pa.main(["--artifacts", str(tmp_path), "--url", "triton:8001", "--out", str(out)])
    assert clients == ["triton:8001"]
    assert measured == [("triton:8001", "query_encoder", FakeClient)]
    assert json.loads(out.read_text())["url"] == "triton:8001"

    load = pa.model_loads(_manifest(None), 16)[0]
    args = pa.parse_args(["--url", "triton:8001"])
    command = pa.pa_command("perf_analyzer", "triton:8001", load, tmp_path / "d.json", 1, tmp_path / "r.csv", args)
    assert command[command.index("-u") + 1] == "triton:8001"
