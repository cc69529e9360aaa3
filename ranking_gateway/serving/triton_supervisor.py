"""Keeps the embedded Triton running: when `tritonserver` dies (OOM killer, a crashed backend,
a `kill -9`), it is started again on the same ports, with exponential backoff between failed
starts, logged and counted in `/metrics`.

Same ports, so the gateway's gRPC channel (short reconnect backoff, `triton_client`) finds the
new server by itself; until then searches degrade (BM25, retrieval order) or answer 503, as
for any Triton outage. A watcher thread rather than a task: `EmbeddedTriton.start` blocks for
the seconds the python-backend models take to load, and the event loop must keep answering.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field

from ranking_gateway.core.errors import CliError
from ranking_gateway.serving.metrics import GatewayMetrics
from ranking_gateway.serving.triton_server import EmbeddedTriton

log = logging.getLogger(__name__)


@dataclass
class TritonSupervisor:
    """Watches a started `EmbeddedTriton`; `start()` the watch, `stop()` it (and the server)."""

    triton: EmbeddedTriton
    metrics: GatewayMetrics
    first_backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    poll_s: float = 0.2
    _stopping: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    def start(self) -> TritonSupervisor:
        self._thread = threading.Thread(target=self._watch, name="triton-supervisor", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop watching and stop the server, also one in the middle of a restart."""
        self._stopping.set()
        pid = self.triton.pid
        if pid is not None:  # a start in progress sees its process end and gives up
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.triton.stop()

    def __enter__(self) -> TritonSupervisor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _watch(self) -> None:
        while not self._stopping.is_set():
            status = self.triton.exit_status()
            if status is None:
                self._stopping.wait(self.poll_s)
                continue
            died = time.monotonic()
            log.error("embedded Triton exited with status %s; restarting it", status)
            self.metrics.triton_exits.inc()
            if self._restart():
                recovery_s = time.monotonic() - died
                self.metrics.triton_recovery.observe(recovery_s)
                log.warning("embedded Triton is serving again, %.1f s after it exited", recovery_s)

    def _restart(self) -> bool:
        """Start the server again until it is ready or we stop; True once it is serving."""
        delay = self.first_backoff_s
        while not self._stopping.wait(delay):
            self.triton.stop()  # its stubs and old log handle first
            self.metrics.triton_restarts.inc()
            try:
                self.triton.start()
                return True
            except (CliError, OSError) as exc:
                if self._stopping.is_set():
                    break
                delay = min(delay * 2, self.max_backoff_s)
                log.error("restarting the embedded Triton failed (next try in %.0f s): %s",
                          delay, str(exc).splitlines()[0])
        return False
