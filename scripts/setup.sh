#!/usr/bin/env bash
# Set-up on a fresh Debian machine with Python 3.11: system packages, a virtual environment,
# the project and its test tools. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# redis-server: the shared profile store / query cache, and the personalisation tests start one
if ! command -v redis-server >/dev/null 2>&1; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq redis-server >/dev/null
fi

python_bin="${PYTHON:-}"
if [ -z "$python_bin" ]; then
    python_bin=$(command -v python3.11 || command -v python3)
fi
if [ ! -x .venv/bin/python ]; then
    "$python_bin" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# build, train, eval: what the quickstart runs; test: the suite. torch==2.13.0 is pinned in
# pyproject.toml's build extra: the CPU build, not the multi-GB CUDA one
.venv/bin/python -m pip install -q -e '.[build,train,eval,test]'
echo "set-up done: $(.venv/bin/python --version), $(.venv/bin/ranking-gateway --help | head -1)"
