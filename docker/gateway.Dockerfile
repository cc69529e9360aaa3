# The gateway alone, for an external Triton (--triton-url): the run-time dependencies only, no
# torch/transformers (the models run in Triton; the build happens elsewhere).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ranking_gateway ranking_gateway
COPY build/ranking_build build/ranking_build
COPY model_repository model_repository
RUN pip install --no-cache-dir .
EXPOSE 8000
ENTRYPOINT ["ranking-gateway"]
