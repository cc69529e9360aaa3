"""Serving runs without build-time code: importing the gateway and the `serve` command loads
neither torch, transformers nor the build package (a slim serving image can leave them out)."""

import json
import subprocess
import sys

BUILD_TIME = ("torch", "transformers", "ranking_build", "onnx")


def test_serving_imports_no_build_time_code() -> None:
    probe = (
        "import json, sys\n"
        "import ranking_gateway.serving.app, ranking_gateway.serving.command\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({BUILD_TIME!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_the_probe_would_see_them() -> None:
    """The check above can fail: the build step does import them."""
    probe = "import sys, ranking_build.pipeline; print('torch' in sys.modules and 'ranking_build' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
