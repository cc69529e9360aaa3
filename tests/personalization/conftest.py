"""Fixtures for the personalisation tests: a real `redis-server` on a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ranking_gateway.serving.triton_server import free_port


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen
    directory: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_redis(directory: Path, *extra: str, port: int | None = None) -> RedisServer:
    """Start `redis-server` in `directory` on `port` (default: a free one) and wait until it
    answers PING (a restart on the same port and directory recovers its append-only file)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (CI must have it: apt-get install -y redis-server)")
        pytest.skip("redis-server is not installed (apt-get install -y redis-server); CI is not set")
    directory.mkdir(parents=True, exist_ok=True)
    fixed = port
    for _ in range(5):  # a port found free can be taken before redis binds it: retry
        port = fixed or free_port()
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning", *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return RedisServer(port=port, process=process, directory=directory)
            except OSError:
                time.sleep(0.02)
        process.kill()
        process.wait()
    raise RuntimeError("could not start redis-server")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's redis-server, emptied for this test."""
    with socket.create_connection(("127.0.0.1", redis_server.port), timeout=5) as sock:
        sock.sendall(b"FLUSHALL\r\n")
        assert sock.recv(16).startswith(b"+OK")
    return redis_server.url


@pytest.fixture
def dead_redis_url() -> str:
    """A loopback port nothing listens on: Redis 'down'."""
    return f"redis://127.0.0.1:{free_port()}/0"
