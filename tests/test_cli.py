"""The CLI on an install without the build extra: `serve` is there, build-time commands fail
with a one-line hint instead of a traceback, and without the build package its command is left out."""

import subprocess
import sys

BLOCK = "import sys\nfor name in {blocked!r}: sys.modules[name] = None\n"


def run_cli(blocked: tuple[str, ...], *argv: str) -> subprocess.CompletedProcess:
    code = BLOCK.format(blocked=blocked) + f"from ranking_gateway.cli import main\nsys.exit(main({list(argv)!r}))\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_without_torch_build_is_a_one_line_hint(tmp_path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"_id": "a", "text": "x"}\n')
    done = run_cli(("torch", "transformers"), "build", "--corpus", str(corpus), "--artifacts", str(tmp_path / "a"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "ranking-gateway[build]" in done.stderr


def test_without_the_build_package_serve_remains() -> None:
    done = run_cli(("ranking_build",), "--help")
    assert done.returncode == 0, done.stderr
    assert "serve" in done.stdout and "build" not in done.stdout.split("{", 1)[1].split("}", 1)[0].split(",")


def test_without_the_embedded_triton_serve_and_triton_are_a_one_line_hint(tmp_path) -> None:
    """The gateway image has no Triton server: `serve` needs --triton-url there, and says so."""
    for argv in (("serve", "--artifacts", str(tmp_path)), ("triton", "--model-repository", str(tmp_path))):
        done = run_cli(("pytriton",), *argv)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "ranking-gateway[embedded]" in done.stderr, done.stderr
    assert "--triton-url" in run_cli(("pytriton",), "serve", "--artifacts", str(tmp_path)).stderr
