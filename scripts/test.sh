#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: real embedded Triton, real FAISS, real Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
