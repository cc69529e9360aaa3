# Triton for the CPU target: the official image plus what the python-backend models (each model's
# model.py over cpu_runtime.py) import: onnxruntime for the onnx_* runtimes, torch and transformers
# for the torch_* ones. Not the project itself. (The TensorRT target needs nothing beyond the
# official image.) Set TORCH_INDEX_URL to the PyTorch CPU wheel index to avoid pulling the CUDA
# build of torch. Versions as in pyproject.toml.
FROM nvcr.io/nvidia/tritonserver:24.10-py3
ARG TORCH_INDEX_URL=""
RUN pip install --no-cache-dir ${TORCH_INDEX_URL:+--extra-index-url $TORCH_INDEX_URL} \
        "numpy<2" torch==2.13.0 "transformers>=4.45" "onnxruntime>=1.18"
# the python-backend stubs' OpenMP threads must not spin between inferences: with several models
# on a few cores the spinning starves the one that has work (ranking_gateway/serving/triton_server.py
# sets the same for the embedded server; 3x the reranked q/s on SciFact, bench/overload.py)
ENV OMP_WAIT_POLICY=PASSIVE
