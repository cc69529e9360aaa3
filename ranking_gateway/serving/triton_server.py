"""The embedded Triton server: the `tritonserver` binary that the `nvidia-pytriton` wheel ships.

No container: we lay out a backend directory with the python backend and the stub for this
interpreter's Python version, put the wheel's shared libraries on `LD_LIBRARY_PATH`, start the
server (on free loopback ports unless given others: `ranking-gateway triton` listens on fixed
ones on every interface, in a container), and wait until it has loaded the models. The server
dies with us (PR_SET_PDEATHSIG), so a killed gateway leaves no orphan.

A model that fails to load does not stop the server: it answers, unready, with the model
UNAVAILABLE and Triton's reason in its model index, which the gateway quotes when it refuses to
start (`serving.compatibility`) and `start` logs.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import site
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ranking_gateway.core.errors import CliError
from ranking_gateway.serving.compatibility import reason_line

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class TritonInstallation:
    """Where the wheel keeps the server, the python backend, its stubs and its libraries."""

    server_binary: Path
    python_backend: Path
    stub: Path
    library_dir: Path

    @classmethod
    def from_wheel(cls) -> "TritonInstallation":
        # ModuleNotFoundError without the `embedded` extra: the CLI names the extra (cli.EXTRA_OF_MODULE)
        import pytriton

        root = Path(pytriton.__file__).resolve().parent
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        inst = cls(
            server_binary=root / "tritonserver" / "bin" / "tritonserver",
            python_backend=root / "tritonserver" / "backends" / "python",
            stub=root / "tritonserver" / "python_backend_stubs" / version / "triton_python_backend_stub",
            library_dir=root.parent / "nvidia_pytriton.libs",
        )
        for path in (inst.server_binary, inst.python_backend, inst.stub, inst.library_dir):
            if not path.exists():
                raise CliError(f"embedded Triton is incomplete: {path} is missing")
        return inst


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the parent process dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class EmbeddedTriton:
    """A running `tritonserver` over one model repository. Use as a context manager."""

    model_repository: Path
    log_path: Path | None = None
    startup_timeout_s: float = 180.0
    # how long in-flight inferences may finish after SIGTERM (Triton's --exit-timeout-secs), and
    # how long `stop` waits in all before SIGKILL: that grace plus a few seconds to unload models
    in_flight_grace_s: int = 10
    stop_timeout_s: float = 15.0
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    # the interface every endpoint listens on: loopback for the gateway's own Triton, "0.0.0.0"
    # in a container (`ranking-gateway triton`)
    address: str = "127.0.0.1"
    # the server's log to our stdout (a container's log) instead of `log_path` or a temporary file
    console_log: bool = False
    # None: Triton loads every model of the repository at start-up, and nothing else ever.
    # A list: explicit model-control mode over a live repository (`serving.live_repository`),
    # these models loaded at start-up, others loaded and unloaded by the gateway (a live swap);
    # the swap updates the list, so a restart (`TritonSupervisor`) loads the version then serving.
    # An empty list: explicit mode with nothing loaded, over a repository that a gateway fills
    # (an external Triton for `serve --triton-live-repository`)
    load_models: list[str] | None = None
    _process: subprocess.Popen | None = field(default=None, init=False, repr=False)
    _workdir: tempfile.TemporaryDirectory | None = field(default=None, init=False, repr=False)
    _log_file: object = field(default=None, init=False, repr=False)

    @property
    def _connect_host(self) -> str:
        return "127.0.0.1" if self.address in ("0.0.0.0", "::", "") else self.address

    @property
    def grpc_url(self) -> str:
        return f"{self._connect_host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self._connect_host}:{self.http_port}"

    @property
    def pid(self) -> int | None:
        """The tritonserver process id while it runs (fault tests kill it on purpose)."""
        return None if self._process is None else self._process.pid

    def exit_status(self) -> int | None:
        """The server's exit status once it has exited (None while it runs, or before `start`)."""
        return None if self._process is None else self._process.poll()

    def wait(self) -> int:
        """Block until the started server exits; its exit status."""
        assert self._process is not None, "not started"
        return self._process.wait()

    def _backend_directory(self, inst: TritonInstallation) -> Path:
        """The python backend needs the stub for our Python next to `libtriton_python.so`."""
        assert self._workdir is not None
        backend = Path(self._workdir.name) / "backends" / "python"
        backend.mkdir(parents=True)
        for item in inst.python_backend.iterdir():
            if item.is_file():
                (backend / item.name).symlink_to(item)
        shutil.copy2(inst.stub, backend / inst.stub.name)
        return backend.parent

    def _environment(self, inst: TritonInstallation) -> dict[str, str]:
        env = dict(os.environ)
        libs = [str(inst.library_dir), str(Path(sys.base_prefix) / "lib")]
        if env.get("LD_LIBRARY_PATH"):
            libs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
        # the stub embeds this Python: give it our interpreter's stdlib and site-packages
        paths = [*site.getsitepackages(), *(p for p in sys.path if p.endswith("site-packages"))]
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env["PYTHONHOME"] = sys.base_prefix
        # every python-backend model is a stub process with its own OpenMP pool (torch, ONNX
        # Runtime), whose threads by default spin for a while after each inference: with two or
        # three models on a few cores, the spinning starves the model that has work. Measured on
        # SciFact (2 cores, bench/overload.py): 13.6 reranked q/s spinning, 41.2 passive
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        # the stub also finds its environment through the `python3` on PATH: make it ours, so a
        # venv that is not activated (CI, a service manager) still gives the models torch
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        if sys.prefix != sys.base_prefix:
            env["VIRTUAL_ENV"] = sys.prefix
        return env

    def _has_models(self) -> bool:
        """A mistyped repository path fails here, in one line, rather than as a Triton serving nothing."""
        if self.load_models is None:  # every model of the repository (a build's, or a laid-out live one)
            return any(self.model_repository.glob("*/config.pbtxt"))
        if not self.load_models:  # explicit mode over a repository a gateway fills: may be empty
            return self.model_repository.is_dir()
        return (self.model_repository / self.load_models[0] / "config.pbtxt").exists()

    def start(self) -> "EmbeddedTriton":
        inst = TritonInstallation.from_wheel()
        if not self._has_models():
            raise CliError(f"{self.model_repository} is not a built model repository (run `ranking-gateway build`)")
        self._workdir = tempfile.TemporaryDirectory(prefix="ranking-gateway-triton-")
        cmd = [
            str(inst.server_binary),
            f"--model-repository={self.model_repository.resolve()}",
            f"--backend-directory={self._backend_directory(inst)}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            f"--http-address={self.address}",  # the metrics endpoint's too
            f"--grpc-address={self.address}",
            "--allow-metrics=true",
            "--disable-auto-complete-config",
            # a model that fails to load leaves it serving, unready, with the reason in its model
            # index (which the gateway quotes) rather than exiting with it in the log alone
            "--exit-on-error=false",
            f"--exit-timeout-secs={self.in_flight_grace_s}",
            "--log-verbose=0",
        ]
        if self.load_models is not None:
            cmd += ["--model-control-mode=explicit", *(f"--load-model={name}" for name in self.load_models)]
        log_path = None if self.console_log else self.log_path or Path(self._workdir.name) / "tritonserver.log"
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = log_path.open("ab")
        log.info("starting embedded Triton (grpc %s:%d, http %s:%d), log: %s", self.address, self.grpc_port,
                 self.address, self.http_port, log_path or "stdout")
        self._process = subprocess.Popen(
            cmd,
            env=self._environment(inst),
            stdout=self._log_file,  # None: ours
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            # its own process group, holding its python-backend stubs too: `stop` ends them all,
            # even when tritonserver itself died without stopping them (a SIGKILL leaves them behind)
            start_new_session=True,
        )
        try:
            self._wait_ready(log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, log_path: Path | None) -> None:
        """Until the server answers: it opens its endpoints once it has tried to load every model,
        so it is then ready, or serving without the models that failed (logged, with Triton's reasons)."""
        deadline = time.monotonic() + self.startup_timeout_s
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                assert self._process is not None
                if self._process.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-3000:] if log_path else "(its log is above)"
                    raise CliError(f"tritonserver exited with status {self._process.returncode}:\n{tail}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.http_url}/v2/health/live").status_code == 200:
                        self._report_readiness(client)
                        return
                time.sleep(0.5)
        raise CliError(f"tritonserver did not answer after {self.startup_timeout_s:.0f} s; log: {log_path or 'stdout'}")

    def _report_readiness(self, client: httpx.Client) -> None:
        try:
            if client.get(f"{self.http_url}/v2/health/ready").status_code == 200:
                log.info("embedded Triton is ready")
                return
            index = client.post(f"{self.http_url}/v2/repository/index", json={}).json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("embedded Triton answers, but not what it loaded: %s", exc)
            return
        for model in index:
            if model.get("state") != "READY":
                log.error("embedded Triton serves without model %r, %s: %s", model.get("name"),
                          model.get("state") or "not loaded", reason_line(model.get("reason")))

    def stop(self, timeout_s: float | None = None) -> None:
        """SIGTERM, then SIGKILL after `stop_timeout_s`: bounded, so that whoever stops us does
        not SIGKILL us first and orphan a server stuck in its shutdown."""
        timeout_s = self.stop_timeout_s if timeout_s is None else timeout_s
        proc, self._process = self._process, None
        if proc is not None and proc.poll() is None:
            asked = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
                log.info("embedded Triton stopped %.1f s after SIGTERM", time.monotonic() - asked)
            except subprocess.TimeoutExpired:
                log.warning("embedded Triton still running %.0f s after SIGTERM; killing it", timeout_s)
                proc.kill()
                proc.wait()
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # stubs that outlived their server
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> "EmbeddedTriton":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
