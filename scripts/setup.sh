#!/usr/bin/env bash
# Set-up on a fresh Debian machine with Python 3.11: system packages, a virtual environment,
# the project and its test tools. Idempotent: a second run only checks.
#   bash scripts/setup.sh           what CI, the tests and the quickstart need
#   bash scripts/setup.sh --bench   also what bench/perf_analyzer.py needs (or SETUP_BENCH=1):
#                                   Debian's libb64-0d and the `bench` extra (tritonclient[all]'s
#                                   perf_analyzer binary, the CUDA runtime library it links)
#   bash scripts/setup.sh --docker  also Debian's docker.io, docker-compose and debootstrap (or
#                                   SETUP_DOCKER=1): what tests/deploy/test_compose_stack.py and
#                                   scripts/compose_stack.sh use (CI installs them; the test skips
#                                   where no engine can run)
set -euo pipefail
cd "$(dirname "$0")/.."

bench="${SETUP_BENCH:-0}"
docker="${SETUP_DOCKER:-0}"
for arg in "$@"; do
    case "$arg" in
        --bench) bench=1 ;;
        --docker) docker=1 ;;
        *) echo "usage: bash scripts/setup.sh [--bench] [--docker]" >&2; exit 2 ;;
    esac
done

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# redis-server: the shared profile store / query cache, and the personalisation tests start one
if ! command -v redis-server >/dev/null 2>&1; then
    apt_install redis-server
fi
# libb64-0d: perf_analyzer links libb64.so.0d (opt-in: only the bench needs it)
if [ "$bench" = 1 ] && ! dpkg -s libb64-0d >/dev/null 2>&1; then
    apt_install libb64-0d
fi

# the compose stack's engine and tools (opt-in: only tests/deploy/test_compose_stack.py needs them)
if [ "$docker" = 1 ] && ! { command -v dockerd && command -v docker-compose && command -v debootstrap; } >/dev/null 2>&1; then
    apt_install docker.io docker-compose debootstrap
fi

python_bin="${PYTHON:-}"
if [ -z "$python_bin" ]; then
    python_bin=$(command -v python3.11 || command -v python3)
fi
if [ ! -x .venv/bin/python ]; then
    "$python_bin" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# embedded (the Triton server `serve` starts), build, train, eval: what the quickstart runs;
# test: the suite. torch==2.13.0 is pinned in pyproject.toml's build extra: the CPU build, not
# the multi-GB CUDA one
extras=embedded,build,train,eval,test
if [ "$bench" = 1 ]; then extras="$extras,bench"; fi
.venv/bin/python -m pip install -q -e ".[$extras]"
echo "set-up done: $(.venv/bin/python --version), $(.venv/bin/ranking-gateway --help | head -1)"
