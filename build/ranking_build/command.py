"""The `build` subcommand: flags → BuildSettings → pipeline."""

from __future__ import annotations

import argparse
from pathlib import Path

from ranking_gateway.core.config import BuildSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "build", help="export/compile the models, write the Triton repository, index a corpus (FAISS and BM25)"
    )
    p.add_argument("--corpus", type=Path, required=True, help="JSON lines {_id, title?, text} (BEIR layout)")
    p.add_argument("--artifacts", type=Path, required=True, help="output directory (model_repository/, index/, ...)")
    p.add_argument("--encoder", type=Path, help="local Hugging Face encoder directory (default all-MiniLM-L6-v2)")
    p.add_argument("--reranker", type=Path,
                   help="a reranker directory, its kind read from it: a cross-encoder (Hugging Face sequence "
                   "classification, 1 logit) or a late-interaction reranker (late_interaction.json, e.g. "
                   "models/scifact-reranker: its document side is computed here into a token store)")
    p.add_argument("--target", choices=["cpu", "cuda", "tensorrt"], default="cpu",
                   help="cpu: python-backend models on CPU; cuda: the same on KIND_GPU instances in PyTorch fp16, "
                   "for GPUs without TensorRT; tensorrt: TensorRT fp16 engines (the tensorrt extra)")
    p.add_argument(
        "--cpu-runtime",
        choices=["auto", "torch_bf16", "torch_fp32", "onnx_fp32", "onnx_int8"],
        default="auto",
        help="runtime of the CPU target's python-backend models (auto: torch_bf16 where the CPU has native "
        "bf16, i.e. AMX/AVX512-BF16, else onnx_int8; the fastest measured by bench/cpu_runtimes.py)",
    )
    p.add_argument("--max-length", type=int, default=256, help="cross-encoder max tokens per (query, document) pair (a late-interaction reranker's lengths are its own)")
    p.add_argument(
        "--document-max-length", type=int, default=256, help="document tokens when embedding the corpus"
    )
    p.add_argument("--index", choices=["flat", "hnsw"], default="flat", help="FAISS index (default exact inner product)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ranking_build.pipeline import run_build

    if not 16 <= args.max_length <= 512:
        raise SystemExit("error: --max-length must be between 16 and 512")
    settings = BuildSettings(
        corpus=args.corpus,
        artifacts=args.artifacts,
        encoder=args.encoder,
        reranker=args.reranker,
        target=args.target,
        cpu_runtime=args.cpu_runtime,
        max_length=args.max_length,
        document_max_length=args.document_max_length,
        index_type=args.index,
    )
    run_build(settings)
    return 0
