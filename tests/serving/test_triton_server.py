"""The embedded Triton's environment: what its python-backend stubs inherit."""

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
