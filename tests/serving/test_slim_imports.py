"""The slim gateway: `serve --triton-url` runs on the base install, without torch, transformers,
ONNX, onnxruntime, a Triton server, the build package, tqdm or matplotlib (the gateway image
installs only the base dependencies: pyproject.toml)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from ranking_gateway.core.artifacts import ArtifactPaths

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
# what the slim install lacks (scipy: bm25s's optional sparse backend, which the base leaves out)
ABSENT = ("torch", "transformers", "onnx", "onnxruntime", "pytriton", "tqdm", "matplotlib", "scipy")
BUILD_PACKAGE_ALLOWED = {"ranking_build", "ranking_build.command"}  # `build`'s flags, which the CLI lists

# In a fresh interpreter, with the absent modules made unimportable (as on the slim install: a
# library's optional import of one falls back, an unconditional one fails): the CLI's parser,
# then `serve --triton-url` as the user runs it, up to uvicorn, whose run instead enters and
# leaves the app's lifespan (the index, the tokenizers, the Triton client, personalisation).
PROBE = """
import asyncio, json, sys
for name in {absent!r}:
    sys.modules[name] = None
import uvicorn
from ranking_gateway import cli
from ranking_gateway.serving import compatibility

def lifespan_only(server, sockets=None):
    app = server.config.app
    async def enter_and_leave():
        async with app.router.lifespan_context(app):
            pass
    asyncio.run(enter_and_leave())

uvicorn.Server.run = lifespan_only
compatibility.STARTUP_WAIT_S = 0.0  # no Triton here: one try, a warning, and on
status = cli.main({argv!r})
loaded = sorted(m for m, module in sys.modules.items() if module is not None)
print(json.dumps({{"status": status, "modules": loaded}}))
"""


def _serve_modules(argv: list[str], absent: tuple[str, ...] = ABSENT) -> tuple[int, set[str], str]:
    code = PROBE.format(absent=absent, argv=argv)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["status"], set(report["modules"]), done.stderr


def _heavy(modules: set[str]) -> list[str]:
    tops = {m.split(".")[0] for m in modules}
    build = {m for m in modules if m.split(".")[0] == "ranking_build"} - BUILD_PACKAGE_ALLOWED
    return sorted(tops.intersection(ABSENT) | build)


def test_serve_with_an_external_triton_needs_only_the_base_install(artifacts: ArtifactPaths, tmp_path: Path) -> None:
    argv = ["serve", "--artifacts", str(artifacts.root), "--triton-url", "127.0.0.1:9", "--port", "0",
            "--event-log", str(tmp_path / "events")]
    status, modules, stderr = _serve_modules(argv)
    assert status == 0, stderr[-3000:]  # e.g. "error: `serve` needs torch: ..."
    assert _heavy(modules) == []
    # and it ran what serving runs: the Triton client, the indexes, the HTTP server
    assert {"tritonclient.grpc.aio", "faiss", "bm25s", "tokenizers", "uvicorn", "ranking_gateway.serving.app"} <= modules


def test_the_probe_sees_a_heavy_import() -> None:
    """The check above can fail: with torch importable, the build's code loads it, and a
    gateway module that imported torch would fail the probe with the absent list in force."""
    code = "import json, sys, ranking_build.pipeline; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert {"torch", "ranking_build.pipeline"} <= set(_heavy(set(json.loads(done.stdout))))
    probe = PROBE.format(absent=ABSENT, argv=["--help"]).replace("import uvicorn", "import uvicorn, ranking_build.pipeline")
    failed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert failed.returncode != 0 and "torch" in failed.stderr


def test_importing_the_gateway_loads_no_build_time_code() -> None:
    """Even where they are installed, importing the gateway and its commands loads none of them
    (bm25s's optional ones aside: it uses tqdm and scipy when they are there)."""
    code = (
        "import json, sys\n"
        "import ranking_gateway.serving.app, ranking_gateway.serving.command, ranking_gateway.serving.triton_command\n"
        "import ranking_gateway.serving.compatibility, ranking_gateway.serving.triton_server\n"
        "from ranking_gateway.cli import build_parser\n"
        "build_parser()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert [m for m in _heavy(set(json.loads(done.stdout))) if m not in ("tqdm", "scipy")] == []


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower() for r in requirements}


def test_the_base_dependencies_leave_out_the_heavy_ones() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    base = _requirement_names(project["dependencies"])
    assert not base & {"torch", "transformers", "nvidia-pytriton", "onnx", "onnxruntime", "tqdm", "matplotlib"}
    assert {"tritonclient", "faiss-cpu", "tokenizers", "bm25s", "starlette", "uvicorn"} <= base
    extras = project["optional-dependencies"]
    assert {"nvidia-pytriton", "onnxruntime"} <= _requirement_names(extras["embedded"])
    assert {"torch", "onnx", "onnxruntime"} <= _requirement_names(extras["build"])  # the export is checked in onnxruntime
