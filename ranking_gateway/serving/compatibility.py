"""Whether the Triton the gateway is about to serve with can run this build: asked once, at
start-up, of the embedded Triton and of an external one (`serve --triton-url`) alike.

The build records what it compiled the models with (`Manifest.toolchain`); Triton says which
release it is (server metadata) and what it made of the model repository (its index: each
model READY, or UNAVAILABLE with a reason, such as a CPU model's own onnxruntime check in
`cpu_runtime.py`). TensorRT engines on another Triton release than the one they were built for,
or a model the plan needs that Triton could not load, make a one-line `IncompatibleTriton` (the
CLI exits 2) that quotes Triton's reason, instead of a gateway whose searches all fail. A Triton
that does not answer is not refused: the gateway serves degraded until it does, as in any outage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ranking_gateway.core.artifacts import Manifest
from ranking_gateway.core.errors import CliError

log = logging.getLogger(__name__)

# how long start-up waits for a Triton that does not answer yet, or still loads a model it needs
STARTUP_WAIT_S = 30.0
LOADING = "LOADING"
READY = "READY"


class IncompatibleTriton(CliError):
    """This Triton cannot serve these artifacts."""


def reason_line(reason: object) -> str:
    """Triton's reason for a model's state, on one line (the python backend appends the
    model's traceback after a blank line)."""
    text = str(reason or "").split("\n\nAt:", 1)[0]
    return " ".join(text.split()) or "no reason given"


def _release(version: str) -> tuple[str, ...]:
    return tuple(version.strip().split(".")[:2])


def problem(
    manifest: Manifest, needed: Sequence[str], server_version: str, index: Sequence[Mapping[str, Any]], url: str,
    names: Mapping[str, str] | None = None,
) -> str | None:
    """Why the Triton at `url`, of `server_version` and with this model `index` (Triton's: name,
    version, state, reason), cannot serve these artifacts' models `needed`; None if it can.
    `names`: the Triton name of each needed model where it is not its own (a live repository's
    version-suffixed names); messages say the contract's name."""
    names = names or {}
    tools = manifest.toolchain
    if manifest.target == "tensorrt" and tools is not None and tools.triton_server:
        if _release(server_version) != _release(tools.triton_server):
            return (
                f"Triton at {url} is version {server_version}, but these artifacts' TensorRT engines were built with "
                f"TensorRT {tools.tensorrt} for Triton {tools.triton_server} ({tools.triton_image}), and load in no "
                "other: serve them from that image, or rebuild them for this Triton's TensorRT"
            )
    for name in needed:
        versions = [m for m in index if m.get("name") == names.get(name, name)]
        if not versions:
            return f"Triton at {url} has no model {name!r}: is it serving this build's model repository?"
        if any(m.get("state") == READY for m in versions):
            continue
        refused = [m for m in versions if m.get("reason")]
        if refused:
            state = refused[0].get("state") or "not loaded"
            return f"Triton at {url} cannot serve the model {name!r} ({state}): {reason_line(refused[0]['reason'])}"
    return None


def _loading(index: Sequence[Mapping[str, Any]], needed: Sequence[str]) -> bool:
    return any(m.get("name") in needed and m.get("state") == LOADING for m in index)


def check_triton(
    url: str, manifest: Manifest, needed: Sequence[str], wait_s: float = STARTUP_WAIT_S,
    names: Mapping[str, str] | None = None,
) -> None:
    """Ask the Triton at `url` (gRPC) what it is and serves; `IncompatibleTriton` where it cannot
    serve `needed` of these artifacts. Waits up to `wait_s` for a Triton that does not answer yet
    or is still loading one of them; past that, warns and lets the gateway start."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    names = dict(names or {})
    served = [names.get(n, n) for n in needed]
    deadline = time.monotonic() + wait_s
    client = grpcclient.InferenceServerClient(url)
    try:
        while True:
            try:
                version = str(client.get_server_metadata(as_json=True, client_timeout=5.0).get("version", "?"))
                index = client.get_model_repository_index(as_json=True, client_timeout=5.0).get("models", [])
                if not _loading(index, served) or time.monotonic() >= deadline:
                    break
            except InferenceServerException as exc:
                if time.monotonic() >= deadline:
                    log.warning("could not ask Triton at %s what it serves (%s); starting, degraded until it answers",
                                url, reason_line(exc.message()))
                    return
            time.sleep(0.5)
    finally:
        client.close()
    reason = problem(manifest, needed, version, index, url, names)
    if reason is not None:
        raise IncompatibleTriton(reason)
    states = {m.get("name"): m.get("state") for m in index if m.get("name") in served}
    unready = sorted(name for name, state in states.items() if state != READY)
    if unready:
        log.warning("Triton %s at %s has not loaded %s (no reason given); searches degrade until it does",
                    version, url, ", ".join(unready))
    else:
        log.info("Triton %s at %s serves every model this build needs (%s)", version, url, ", ".join(needed))
