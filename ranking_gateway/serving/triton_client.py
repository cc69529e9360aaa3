"""The gateway's async client for the Triton models (names and tensors from `core.contract`).

The reranker's pairs go out as several concurrent requests of `chunk_size` pairs: Triton's
dynamic batcher then merges chunks from concurrent searches (of different users) into one
execution, instead of each search monopolising the model with one big batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE
from tritonclient.utils import InferenceServerException

from ranking_gateway.core.contract import DOCUMENT_TOKENS, ENCODER, QUERY_TOKENS, RERANKER, ModelContract
from ranking_gateway.core.errors import BackendUnavailable
from ranking_gateway.serving.tokenization import TokenBatch


def _channel_args() -> list[tuple[str, int]]:
    """tritonclient's own channel options, plus a short reconnect backoff: gRPC's default grows to
    120 s, so a Triton back after a restart (supervisor, or an external one) would go unused for
    up to two minutes. Reconnect tries to a loopback or in-cluster server cost next to nothing."""
    keepalive = grpcclient.KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]


class TritonModels:
    """The contract's models on one Triton. `names` maps a contract name (`query_encoder`) to the
    name Triton serves it under: the identity by default; with a live repository
    (`serving.live_repository`) a version-suffixed name, so two builds' models can be loaded side
    by side during a live swap and each version's pipeline calls its own."""

    def __init__(
        self, url: str, timeout_s: float, chunk_size: int, names: Mapping[str, str] | None = None,
        *, _client: grpcclient.InferenceServerClient | None = None,
    ) -> None:
        self._owner = _client is None
        self._client = _client or grpcclient.InferenceServerClient(url=url, channel_args=_channel_args())
        self.url = url
        self.timeout_s = timeout_s
        self.chunk_size = chunk_size
        self.names: dict[str, str] = dict(names or {})

    def triton_name(self, contract_name: str) -> str:
        return self.names.get(contract_name, contract_name)

    def renamed(self, names: Mapping[str, str]) -> TritonModels:
        """A view of the same Triton (one gRPC channel) that calls the models under `names`: a
        swapped-in version gets its own view, and closing a view closes nothing."""
        return TritonModels(self.url, self.timeout_s, self.chunk_size, names, _client=self._client)

    async def close(self) -> None:
        if self._owner:
            await self._client.close()

    async def _infer(self, model: ModelContract, batch: TokenBatch, within_s: float | None = None) -> np.ndarray:
        """The model's output for the batch's fields named by the contract's inputs. `within_s`:
        how long the answer is still wanted; Triton rejects the request, uncomputed, if it is
        still queued then (the models' queue policy), so a search past its deadline leaves no
        work behind. Cancelling the call alone does not: Triton's python backend computes
        cancelled requests it has queued (tests/serving/test_triton_client.py)."""
        inputs = []
        for name in model.inputs:
            array = np.ascontiguousarray(getattr(batch, name))
            item = grpcclient.InferInput(name, list(array.shape), model.input_dtype)
            item.set_data_from_numpy(array)
            inputs.append(item)
        try:
            result = await self._client.infer(
                self.triton_name(model.name),
                inputs,
                outputs=[grpcclient.InferRequestedOutput(model.output)],
                client_timeout=self.timeout_s,
                timeout=None if within_s is None else max(1, int(within_s * 1e6)),  # microseconds
            )
        except InferenceServerException as exc:
            raise BackendUnavailable(f"Triton model {model.name!r} failed: {exc.message()}") from exc
        except (OSError, asyncio.TimeoutError) as exc:
            raise BackendUnavailable(f"Triton at {self.url} is unreachable: {exc}") from exc
        return result.as_numpy(model.output)

    async def encode(self, batch: TokenBatch, within_s: float | None = None) -> np.ndarray:
        """Query embeddings [n, dim], L2-normalised by the model."""
        return await self._infer(ENCODER, batch, within_s)

    async def encode_tokens(self, batch: TokenBatch, within_s: float | None = None) -> np.ndarray:
        """The late-interaction reranker's query token vectors [n, tokens, dim], zero at padding."""
        return await self._infer(QUERY_TOKENS, batch, within_s)

    async def _infer_chunks(
        self, model: ModelContract, batch: TokenBatch, within_s: float | None = None
    ) -> list[np.ndarray]:
        """The batch as concurrent requests of `chunk_size` rows, each trimmed to its own width:
        the outputs in order, one array per chunk."""
        chunks = [batch.rows(i, i + self.chunk_size) for i in range(0, len(batch), self.chunk_size)]
        return list(await asyncio.gather(*(self._infer(model, c, within_s) for c in chunks)))

    async def rerank(self, batch: TokenBatch, within_s: float | None = None) -> np.ndarray:
        """One relevance logit per pair, [n]; chunks are sent concurrently."""
        return np.concatenate(await self._infer_chunks(RERANKER, batch, within_s)).reshape(-1)

    async def encode_documents(self, batch: TokenBatch, within_s: float | None = None) -> list[np.ndarray]:
        """The late-interaction reranker's document token vectors: per document [its tokens, dim],
        padding dropped (as the token store keeps them); chunks are sent concurrently."""
        lengths = batch.attention_mask.sum(axis=1)
        rows = [row for chunk in await self._infer_chunks(DOCUMENT_TOKENS, batch, within_s) for row in chunk]
        return [row[:n] for row, n in zip(rows, lengths)]

    async def ready_models(self, names: list[str]) -> dict[str, bool]:
        """Readiness by contract name (the Triton name behind it is this view's)."""
        status = {}
        for name in names:
            try:
                status[name] = bool(await self._client.is_model_ready(self.triton_name(name), client_timeout=2.0))
            except (InferenceServerException, OSError, asyncio.TimeoutError):
                status[name] = False
        return status

    async def inference_statistics(self, model: str) -> dict:
        """Triton's counters for `model` (inference_count vs execution_count shows batching)."""
        return await self._client.get_inference_statistics(self.triton_name(model), as_json=True)

    async def load_model(self, triton_name: str, timeout_s: float) -> None:
        """Ask a Triton in explicit model-control mode to load `triton_name` (it answers once the
        model is loaded or failed); `BackendUnavailable` with Triton's reason when it fails."""
        await self._model_control("load", triton_name, timeout_s)

    async def unload_model(self, triton_name: str, timeout_s: float = 30.0) -> None:
        await self._model_control("unload", triton_name, timeout_s)

    async def _model_control(self, action: str, triton_name: str, timeout_s: float) -> None:
        call = self._client.load_model if action == "load" else self._client.unload_model
        try:
            await call(triton_name, client_timeout=timeout_s)
        except InferenceServerException as exc:
            raise BackendUnavailable(f"Triton could not {action} {triton_name!r}: {exc.message()}") from exc
        except (OSError, asyncio.TimeoutError) as exc:
            raise BackendUnavailable(f"Triton at {self.url} did not {action} {triton_name!r}: {exc!r}") from exc

    async def model_index(self) -> list[dict]:
        """Triton's model repository index: name, version, state and reason of each model."""
        index = await self._client.get_model_repository_index(as_json=True, client_timeout=5.0)
        return list(index.get("models", []))
