"""bench/stub_teardown.py against the test build: its baseline differs from the model only by
the stubs' freeze, and an unload is followed until every stub has exited."""

from __future__ import annotations

from ranking_gateway.core.artifacts import ArtifactPaths
from tests.bench.bench_module import load_bench

st = load_bench("stub_teardown")


def test_the_baseline_copy_lacks_only_the_freeze(artifacts: ArtifactPaths, tmp_path) -> None:
    frozen = st.repository_copy(artifacts.root, "query_encoder", True, tmp_path)
    unfrozen = st.repository_copy(artifacts.root, "query_encoder", False, tmp_path)
    [kept] = (frozen / "query_encoder").glob("*/cpu_runtime.py")
    [removed] = (unfrozen / "query_encoder").glob("*/cpu_runtime.py")
    assert st.FREEZE in kept.read_text() and st.FREEZE not in removed.read_text()
    assert removed.read_text() == kept.read_text().replace(st.FREEZE, "")


def test_an_unload_is_measured_until_its_stubs_exit(artifacts: ArtifactPaths, tmp_path) -> None:
    repo = st.repository_copy(artifacts.root, "query_encoder", True, tmp_path)
    measured = st.one_unload(repo, "query_encoder", settle_s=0.5)
    assert measured["stubs"] >= 1 and len(measured["cpu_s"]) == measured["stubs"]
    assert all(c >= 0 for c in measured["cpu_s"]) and 0 < measured["exit_s"] < 60
