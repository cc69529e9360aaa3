FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ranking_gateway ranking_gateway
COPY build/ranking_build build/ranking_build
COPY model_repository model_repository
ARG TORCH_INDEX_URL=""
RUN pip install --no-cache-dir ${TORCH_INDEX_URL:+--extra-index-url $TORCH_INDEX_URL} .
EXPOSE 8000
ENTRYPOINT ["ranking-gateway"]
