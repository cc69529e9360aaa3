"""New artifacts that differ from a build in one Triton model only: what `learn` deploys.

The serving build's files are hard-linked into the new directory (copied across file systems),
all but that model's (its model-repository entry, tokenizer and ONNX graphs) and the manifest;
the caller exports the model anew, and the manifest gets its new reranker entry, so the version
key and every cache key change. `ranking_build.query_side` swaps a late-interaction query side
this way, `ranking_build.cross_encoder_swap` a cross-encoder.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ranking_gateway.core.artifacts import ArtifactPaths, Manifest, ModelEntry, Toolchain


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def model_paths(paths: ArtifactPaths, model: str) -> list[Path]:
    """What a build holds of one Triton model, and the manifest that names it: what a rebuild of
    that model alone writes anew."""
    onnx = [p for p in paths.onnx_dir.glob(f"{model}*")] if paths.onnx_dir.is_dir() else []
    return [paths.model_repository / model, paths.tokenizer(model), paths.manifest, *onnx]


def link_build_except(serving: Path, root: Path, skip: list[Path]) -> None:
    """`serving`'s files hard-linked (copied across file systems) under `root`, but for `skip`."""
    skipped = {str(p) for p in skip}
    for src in sorted(serving.rglob("*")):
        dst = root / src.relative_to(serving)
        if any(str(src) == s or str(src).startswith(s + os.sep) for s in skipped):
            continue
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(str(src), str(dst))


def rebuild_one_model(
    serving: Path, out: Path, model: str, export: Callable[[ArtifactPaths, Toolchain], ModelEntry]
) -> Manifest:
    """Artifacts in `out`: `serving`'s files linked, but for Triton model `model`, which
    `export(paths, toolchain)` writes anew (tokenizer, ONNX, model repository) and returns the
    manifest's new reranker entry for; published whole or not at all (`pipeline.publish`)."""
    from ranking_build.pipeline import build_toolchain, publish

    old = Manifest.read(serving)

    def fill(paths: ArtifactPaths) -> Manifest:
        link_build_except(serving, paths.root, model_paths(ArtifactPaths(serving), model))
        toolchain = build_toolchain(old.target)
        manifest = replace(old, reranker=export(paths, toolchain), toolchain=toolchain, created_unix=time.time())
        manifest.write(paths.root)
        return manifest

    return publish(out.resolve(), fill)
