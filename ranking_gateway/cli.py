"""ranking-gateway: build, serve, train and evaluate a Triton-hosted search ranking stack.

Each subcommand lives in its own module exposing `register(subparsers)`; this file only wires
them together, so a feature adds its command without touching the others.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from ranking_gateway.core.errors import CliError

# module path of each subcommand group, in the order `--help` lists them
COMMAND_MODULES: tuple[str, ...] = (
    "ranking_build.command",
    "ranking_gateway.serving.command",
    "ranking_gateway.serving.deploy_command",
    "ranking_gateway.serving.triton_command",
    "ranking_gateway.training.command",
    "ranking_gateway.evaluation.command",
    "ranking_gateway.evaluation.offline",
    "ranking_gateway.personalization.command",
    "ranking_gateway.learning.command",
    "ranking_gateway.quickstart.command",
)

# top-level modules that only an extra installs (pyproject.toml), and that extra (onnxruntime is
# in `embedded` too, for the models on the embedded Triton, which import it in their own process)
EXTRA_OF_MODULE = {
    "torch": "build",
    "transformers": "build",
    "onnx": "build",
    "onnxruntime": "build",
    "matplotlib": "eval",
    "tqdm": "build",
    "pytriton": "embedded",  # the embedded Triton server (`serve` without --triton-url, `triton`)
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ranking-gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", help="Python logging level (default INFO)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # feature not present in this build of the package
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # a serving-only install running a build/train/eval command
        extra = EXTRA_OF_MODULE.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        alternative = " (or an external Triton: --triton-url)" if args.command == "serve" and extra == "embedded" else ""
        print(f"error: `{args.command}` needs {exc.name}: pip install 'ranking-gateway[{extra}]'{alternative}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
