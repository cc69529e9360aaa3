#!/bin/sh
# compose's one-shot `build` service: `ranking-gateway build` into the shared volume, once.
#   BUILD_CORPUS       corpus.jsonl to index (mounted); default: the quickstart collection
#                      (the image's Python standard library docstrings, written here)
#   BUILD_RERANKER     reranker directory (default: the shipped late-interaction SciFact reranker;
#                      "none": first stage only)
#   BUILD_TARGET       cpu (default) or tensorrt (the GPU profile)
#   BUILD_CPU_RUNTIME  the CPU target's runtime (default onnx_fp32: the CPU Triton image carries
#                      onnxruntime, not torch)
#   BUILD_ARGS         more `ranking-gateway build` flags
#   BUILD_FORCE=1      rebuild even when the volume holds a build of the same inputs
# The artifacts land in $DATA/artifacts; `build` itself stages them and renames at the end, so a
# failed or interrupted build leaves no half-written artifacts for Triton and the gateway.
set -eu
data="${DATA:-/data}"
artifacts="$data/artifacts"
reranker="${BUILD_RERANKER:-/app/models/scifact-reranker}"
target="${BUILD_TARGET:-cpu}"
inputs="corpus=${BUILD_CORPUS:-quickstart} reranker=$reranker target=$target runtime=${BUILD_CPU_RUNTIME:-onnx_fp32} args=${BUILD_ARGS:-} code=$(cat /wheels/*.whl | sha256sum | cut -c1-16)"

if [ -f "$artifacts/manifest.json" ] && [ "${BUILD_FORCE:-0}" != 1 ] \
        && [ "$(cat "$data/build-inputs" 2>/dev/null)" = "$inputs" ]; then
    echo "build: $artifacts already holds a build of these inputs ($inputs); BUILD_FORCE=1 rebuilds"
    exit 0
fi

corpus="${BUILD_CORPUS:-}"
if [ -z "$corpus" ]; then
    ranking-gateway quickstart-corpus --out /tmp/quickstart >/dev/null
    corpus=/tmp/quickstart/corpus.jsonl
fi
set -- --corpus "$corpus" --artifacts "$artifacts" --target "$target"
if [ "$reranker" != none ]; then set -- "$@" --reranker "$reranker"; fi
if [ "$target" = cpu ]; then set -- "$@" --cpu-runtime "${BUILD_CPU_RUNTIME:-onnx_fp32}"; fi
# shellcheck disable=SC2086  # BUILD_ARGS is a list of flags
ranking-gateway build "$@" ${BUILD_ARGS:-}
printf '%s' "$inputs" > "$data/build-inputs"
