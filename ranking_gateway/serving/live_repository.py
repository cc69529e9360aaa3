"""The embedded Triton's live model repository: a directory the gateway owns, in which every
artifacts version it serves (or is about to) appears under version-suffixed model names.

Why: a live swap must load the new build's models *beside* the old ones, and one Triton model
repository holds one model per name. So the gateway starts Triton in explicit model-control mode
over this directory, and each version's models become `query_encoder__<suffix>`, ... : a real
directory holding the build's `config.pbtxt` with its `name` rewritten (Triton refuses a config
whose name is not its directory's) and a symlink to the build's version directory (`1/`, the
weights and code: nothing is copied). The gateway's `TritonModels` view of a version maps the
contract names to these, so old and new coexist until the old one is unloaded.

The suffix is a digest of the version key *and* the artifacts path: the same build in another
directory (a copy, perhaps damaged) is another candidate, loaded from its own files.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ranking_gateway.core.artifacts import ArtifactPaths

SEPARATOR = "__"
_NAME_LINE = re.compile(r'^name\s*:\s*"[^"]*"', re.MULTILINE)


def version_suffix(version_key: str, artifacts: Path) -> str:
    return hashlib.sha256(f"{version_key}|{artifacts.resolve()}".encode()).hexdigest()[:12]


def rename_config(config: str, name: str) -> str:
    """`config.pbtxt` text with its top-level `name` set to `name` (added when the build left it out)."""
    if _NAME_LINE.search(config):
        return _NAME_LINE.sub(f'name: "{name}"', config, count=1)
    return f'name: "{name}"\n' + config


@dataclass
class LiveRepository:
    """A gateway-owned model repository of symlinked, renamed versions. `root` None: a temporary
    directory, removed by `cleanup` (serve's exit)."""

    root: Path | None = None
    _temporary: tempfile.TemporaryDirectory | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.root is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="ranking-gateway-live-models-")
            self.root = Path(self._temporary.name)
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def path(self) -> Path:
        assert self.root is not None
        return self.root

    def add(self, paths: ArtifactPaths, version_key: str, models: list[str]) -> dict[str, str]:
        """Lay out `models` (contract names) of the build at `paths` under suffixed names; the
        contract name -> Triton name map. Existing entries of the same suffix are replaced (a
        version served before, whose models were unloaded since)."""
        suffix = version_suffix(version_key, paths.root)
        names: dict[str, str] = {}
        for model in models:
            source = paths.model_repository / model
            config = source / "config.pbtxt"
            if not config.is_file():
                raise FileNotFoundError(f"{source} has no config.pbtxt: not a model of a built repository")
            name = f"{model}{SEPARATOR}{suffix}"
            target = self.path / name
            if target.exists() or target.is_symlink():
                shutil.rmtree(target)
            target.mkdir()
            (target / "config.pbtxt").write_text(rename_config(config.read_text(), name))
            for item in source.iterdir():  # the version directories (and anything else the build put there)
                if item.name != "config.pbtxt":
                    (target / item.name).symlink_to(item.resolve(), target_is_directory=item.is_dir())
            names[model] = name
        return names

    def remove(self, triton_names: list[str]) -> None:
        """Drop unloaded versions' entries (their builds' files are untouched)."""
        for name in triton_names:
            target = self.path / name
            if SEPARATOR in name and target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)

    def cleanup(self) -> None:
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None
