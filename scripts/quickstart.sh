#!/usr/bin/env bash
# The main job on the embedded default, offline, on a fresh Debian machine:
#   set-up → a corpus from the installed Python stdlib docs → a reranker trained on it (small
#   step budget) → build (ONNX, Triton repository, FAISS) → embedded Triton + gateway →
#   real reranked searches. The stack keeps serving on :8000 until Ctrl-C.
# QUICKSTART_EVAL=1 also measures the reranker on the held-out split through the gateway.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS=0
bash scripts/setup.sh
rg=.venv/bin/ranking-gateway
work=runs/quickstart
port=${PORT:-8000}
mkdir -p "$work"

step() { printf '\n\033[1m== [%dm%02ds] %s\033[0m\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

step "corpus: Python standard library docstrings (BEIR layout)"
$rg quickstart-corpus --out "$work/collection"

if [ ! -f "$work/reranker/config.json" ]; then
    step "train the cross-encoder reranker (self-supervised pairs, small step budget)"
    $rg train-reranker --collection "$work/collection" --split train --out "$work/reranker" \
        --epochs 1 --max-steps "${QUICKSTART_STEPS:-80}" --max-length 64 --batch-queries 4 --negatives 3 \
        --lr 2e-4 --miner bm25 --heldout-fraction 0.03 --eval-candidates 20
fi

step "build: ONNX export + check, Triton model repository (CPU), corpus embeddings, FAISS index"
$rg build --corpus "$work/collection/corpus.jsonl" --artifacts "$work/artifacts" \
    --reranker "$work/reranker" --max-length 64 --document-max-length 128

step "serve: embedded Triton + gateway on http://127.0.0.1:$port"
$rg serve --artifacts "$work/artifacts" --port "$port" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null' EXIT INT TERM
until curl -sf "localhost:$port/readyz" >/dev/null; do
    kill -0 $server 2>/dev/null || { echo "the server exited"; exit 1; }
    sleep 1
done

show() { curl -s "localhost:$port/v1/search" -d "$1" | .venv/bin/python scripts/show_search.py; }
for q in "read a file line by line" "parse command line options" "compute a hash of bytes" "run a subprocess and capture output"; do
    step "search: \"$q\" (reranked, then retrieval only)"
    show "{\"query\": \"$q\", \"k\": 5}"
    show "{\"query\": \"$q\", \"k\": 5, \"rerank\": false}"
done

if [ "${QUICKSTART_EVAL:-0}" = 1 ]; then
    step "evaluate on the held-out split (reranking off and on)"
    $rg eval --url "http://127.0.0.1:$port" --collection "$work/collection" --split test --out "$work/eval.json"
fi

step "serving on http://127.0.0.1:$port — try: curl -s localhost:$port/v1/search -d '{\"query\": \"sort a list\"}'  (Ctrl-C stops)"
if [ -n "${QUICKSTART_NO_WAIT:-}" ]; then exit 0; fi
wait $server
