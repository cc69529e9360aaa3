"""The embedded Triton: what its python-backend stubs inherit, and a stop that is bounded."""

import os

from ranking_gateway.serving.triton_server import EmbeddedTriton, TritonInstallation


def test_stub_threads_wait_passively_unless_the_user_says_otherwise(tmp_path, monkeypatch) -> None:
    """Spinning OpenMP threads of one model stub starved the others (3x fewer reranked q/s)."""
    triton = EmbeddedTriton(tmp_path)
    installation = TritonInstallation.from_wheel()
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert triton._environment(installation)["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert triton._environment(installation)["OMP_WAIT_POLICY"] == "ACTIVE"
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"  # ours is a copy


def test_a_server_slow_to_stop_is_killed_after_the_stop_timeout(artifacts, tmp_path, caplog) -> None:
    """Its python-backend models take seconds to unload; past the bound it is SIGKILLed, stubs
    too, so a gateway's shutdown is bounded (a later SIGKILL of the gateway would orphan it)."""
    import logging
    import time

    from tests.serving.test_command import alive, children_of

    triton = EmbeddedTriton(artifacts.model_repository, log_path=tmp_path / "triton.log", stop_timeout_s=0.2).start()
    server = triton.pid
    assert server is not None
    stubs = children_of(server)
    assert stubs, "a python-backend stub per model"
    asked = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="ranking_gateway.serving.triton_server"):
        triton.stop()
    assert time.monotonic() - asked < 3.0, "stop waited past its bound"
    assert "killing it" in caplog.text
    deadline = time.monotonic() + 10
    while any(alive(p) for p in [server, *stubs]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in [server, *stubs] if alive(p)]
