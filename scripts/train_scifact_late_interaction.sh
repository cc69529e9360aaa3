#!/usr/bin/env bash
# The recipe of models/scifact-reranker (the default SciFact reranker, late interaction): one
# `train-reranker --kind late-interaction` run on the SciFact train split's judgments, negatives
# mined by the hybrid first stage the gateway serves, 10 % of the train queries held out to pick
# the epoch and the serving --rerank-alpha. CPU only: about 15 minutes on a 2-core VM (the frozen
# document encoder's pass over the corpus is most of it; --document-states-cache keeps it).
#   usage: scripts/train_scifact_late_interaction.sh COLLECTION OUT_DIR [extra train-reranker flags]
set -euo pipefail
collection=${1:?usage: train_scifact_late_interaction.sh COLLECTION OUT_DIR [flags]}
out=${2:?usage: train_scifact_late_interaction.sh COLLECTION OUT_DIR [flags]}
shift 2
rg=${RG:-.venv/bin/ranking-gateway}
mkdir -p "$out"
$rg train-reranker --kind late-interaction --collection "$collection" --split train \
    --miner hybrid --mine-depth 50 --eval-candidates 30 --heldout-fraction 0.1 \
    --negatives 15 --batch-queries 8 --epochs "${EPOCHS:-4}" --lr 3e-5 --projection-lr 1e-3 \
    --dim 128 --query-max-length 32 --document-max-length 512 \
    --embeddings-cache "$out/corpus-embeddings.npy" --document-states-cache "$out/document-states.npz" \
    --out "$out/reranker" "$@"
