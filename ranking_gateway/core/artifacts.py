"""The artifacts directory: its layout, and the manifest of what was built from what.

Shared by the build step (which writes it) and the gateway (which reads it and versions its
cache with the manifest), so the two cannot disagree about a file name.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ranking_gateway.core.errors import CliError

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1  # bump when a reader of the old layout would misread the new one
KNOWN_FORMATS = (1,)


class ManifestError(CliError):
    """The artifacts directory has no manifest this version can read: rebuilding is the fix."""


@dataclass(frozen=True)
class ArtifactPaths:
    root: Path

    @property
    def model_repository(self) -> Path:
        return self.root / "model_repository"

    @property
    def index_dir(self) -> Path:
        return self.root / "index"

    @property
    def faiss_index(self) -> Path:
        return self.index_dir / "faiss.index"

    @property
    def embeddings(self) -> Path:
        return self.index_dir / "embeddings.npy"

    @property
    def documents(self) -> Path:
        return self.index_dir / "documents.jsonl"

    @property
    def bm25_index(self) -> Path:
        """bm25s index directory (`LexicalIndex`); absent in artifacts built before hybrid retrieval."""
        return self.index_dir / "bm25"

    @property
    def token_store(self) -> Path:
        """The late-interaction reranker's document token vectors (`core.token_store`)."""
        return self.root / "token_store"

    @property
    def onnx_dir(self) -> Path:
        return self.root / "onnx"

    def tokenizer(self, model_name: str) -> Path:
        return self.root / "tokenizers" / model_name

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST_FILE


def sha256_of(path: Path) -> str:
    """Hash of a file, or of every file under a directory (names and contents, sorted)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with file.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@dataclass
class ModelEntry:
    source: str
    sha256: str
    onnx_sha256: str
    max_length: int
    onnx_max_abs_diff: float
    output_dim: int
    # a reranker's `train-reranker` report: the --rerank-alpha its held-out queries preferred
    # (serve's default); None where the model came without one
    recommended_alpha: float | None = None
    # a reranker's kind (`core.reranker_dir`): its Triton model and whether it has a token store
    kind: str = "cross-encoder"
    # the TensorRT target's engine: TensorRT version, precision, GPU, widest input, and its max
    # abs difference from ONNX Runtime on real inputs (ranking_build.tensorrt_engine.EngineInfo);
    # the CUDA target's: runtime, precision, torch and CUDA, and that check where the build had a
    # GPU (ranking_build.cuda_model.check_cuda_model)
    engine: dict | None = None


@dataclass
class LexicalEntry:
    """The BM25 index beside the dense one: how its tokens were made, so a reader can check
    it queries with the same rules."""

    path: str  # relative to the artifacts directory
    method: str  # bm25s scoring variant
    k1: float
    b: float
    stopwords: str
    vocabulary: int  # distinct terms indexed
    # PyStemmer algorithm the documents (and so the queries) were stemmed with; None: unstemmed
    # (also what manifests written before this field mean)
    stemmer: str | None = None


@dataclass
class TokenStoreEntry:
    """The late-interaction document side built with the corpus: what it holds and cost, and the
    hash the gateway checks before serving it."""

    path: str  # relative to the artifacts directory
    sha256: str
    dim: int
    dtype: str  # of the stored vectors (a float16 scale per token beside them)
    documents: int
    tokens: int
    bytes: int
    bytes_per_document: float
    document_max_length: int
    document_encoder: str  # the frozen Transformer under the document projection
    document_encoder_sha256: str
    build_seconds: float


@dataclass
class Toolchain:
    """What the build exported and compiled the models with, that the Triton loading its model
    repository must agree with (`serving.compatibility` checks it against the server at start-up;
    the CPU target's models check their own part when Triton loads them)."""

    onnx_opset: int  # of every exported graph (ranking_build.onnx_export.OPSET)
    torch: str | None = None
    onnx: str | None = None
    onnxruntime: str | None = None  # that checked the export (and quantised it for onnx_int8)
    # the TensorRT target's: the TensorRT its plans were built with, which loads them only in the
    # Triton release shipping that TensorRT (its server version, and the image it comes in)
    tensorrt: str | None = None
    triton_server: str | None = None
    triton_image: str | None = None


@dataclass
class Manifest:
    target: str
    cpu_runtime: str | None
    corpus: str
    documents: int
    embedding_dim: int
    index_type: str
    index_version: str
    encoder: ModelEntry
    reranker: ModelEntry | None
    created_unix: float = field(default_factory=time.time)
    format_version: int = FORMAT_VERSION
    # None: built before the BM25 index existed; such artifacts serve dense retrieval only
    bm25: LexicalEntry | None = None
    # the late-interaction reranker's document side; None without one
    token_store: TokenStoreEntry | None = None
    # the late-interaction document side as a Triton model (`document_token_encoder`), for
    # documents outside the corpus (`POST /v1/rerank`); None without one, or built before it
    document_token_encoder: ModelEntry | None = None
    # what the models were built with; None: built before it was recorded
    toolchain: Toolchain | None = None

    @property
    def version_key(self) -> str:
        """Changes whenever what is served changes (the index, a model's weights, how the models
        were compiled and for what, the query length): part of every cache key."""
        parts = [
            f"format={self.format_version}",
            f"target={self.target}",
            f"runtime={self.cpu_runtime}",
            self.index_version,
            self.encoder.sha256,
            f"query_length={self.encoder.max_length}",
            self.reranker.sha256 if self.reranker else "none",
        ]
        if self.token_store is not None:
            parts.append(self.token_store.sha256)
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def write(self, directory: Path) -> None:
        (directory / MANIFEST_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, directory: Path) -> "Manifest":
        """The manifest in `directory`; a ManifestError (one line, says to rebuild) when it is
        missing, unreadable, or of a format this version does not know."""
        path = directory / MANIFEST_FILE
        rebuild = "rebuild the artifacts with `ranking-gateway build`"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ManifestError(f"no {MANIFEST_FILE} in {directory} (not a finished build); {rebuild}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"{path} is unreadable ({exc}); {rebuild}") from None
        version = data.get("format_version") if isinstance(data, dict) else None
        if version not in KNOWN_FORMATS:
            known = ", ".join(map(str, KNOWN_FORMATS))
            raise ManifestError(f"{path} has format_version {version!r}, this version reads {known}; {rebuild}")
        try:
            data["encoder"] = ModelEntry(**data["encoder"])
            data["reranker"] = ModelEntry(**data["reranker"]) if data.get("reranker") else None
            data["bm25"] = LexicalEntry(**data["bm25"]) if data.get("bm25") else None
            data["token_store"] = TokenStoreEntry(**data["token_store"]) if data.get("token_store") else None
            documents = data.get("document_token_encoder")
            data["document_token_encoder"] = ModelEntry(**documents) if documents else None
            data["toolchain"] = Toolchain(**data["toolchain"]) if data.get("toolchain") else None
            return cls(**data)
        except (KeyError, TypeError) as exc:
            raise ManifestError(f"{path} is not a valid manifest ({type(exc).__name__}: {exc}); {rebuild}") from None
