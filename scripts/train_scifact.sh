#!/usr/bin/env bash
# The SciFact reranker recipe (docs/reranker.md), two `train-reranker` stages:
#   1. --source corpus: self-supervised inverse-cloze pairs cut from the SciFact abstracts
#      (a title or a sentence as the query, its abstract without it as the positive; no labels)
#   2. --source qrels: the train split's judgments, starting from stage 1
# Both mine negatives with the hybrid (dense + BM25) first stage the gateway serves, and keep the
# same held-out 10 % of the train queries to pick the best epoch and the serving --rerank-alpha.
# Minutes on a GPU; on a 2-core CPU, many hours (docs/reranker.md has the measured step times).
#   usage: scripts/train_scifact.sh COLLECTION OUT_DIR [extra train-reranker flags for both stages]
set -euo pipefail
collection=${1:?usage: train_scifact.sh COLLECTION OUT_DIR [flags]}
out=${2:?usage: train_scifact.sh COLLECTION OUT_DIR [flags]}
shift 2
rg=${RG:-.venv/bin/ranking-gateway}
mkdir -p "$out"
common=(--collection "$collection" --split train --max-length "${MAX_LENGTH:-384}" --miner hybrid
        --mine-depth 50 --eval-candidates 30 --heldout-fraction 0.1 --negatives 7
        --embeddings-cache "$out/corpus-embeddings.npy" "$@")

$rg train-reranker "${common[@]}" --source corpus --queries-per-doc 3 --epochs "${STAGE1_EPOCHS:-1}" \
    --batch-queries 32 --lr 1e-4 --out "$out/stage1-corpus"
$rg train-reranker "${common[@]}" --source qrels --init "$out/stage1-corpus" --epochs "${STAGE2_EPOCHS:-8}" \
    --batch-queries 16 --lr 3e-5 --out "$out/reranker"
