"""What unloading a python-backend model costs: the CPU its stubs spend tearing down, and how
long until they exit. Measured for the build's model as it is, and for a copy of it without the
`gc.freeze()` its stubs do after loading (the baseline), alternating, in one run.

    python bench/stub_teardown.py --artifacts runs/scifact-art --model query_encoder --repeats 2 \
        --out bench/results/stub_teardown.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ranking_gateway.serving.triton_server import EmbeddedTriton  # noqa: E402

FREEZE = "        gc.freeze()\n"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def repository_copy(artifacts: Path, model: str, freeze: bool, into: Path) -> Path:
    """A repository holding just `model`, with or without its stubs' freeze."""
    repo = into / ("frozen" if freeze else "unfrozen")
    shutil.copytree(artifacts / "model_repository" / model, repo / model, symlinks=True)
    for runtime in (repo / model).glob("*/cpu_runtime.py"):
        text = runtime.read_text()
        if FREEZE not in text:
            raise SystemExit(f"{runtime} has no gc.freeze(): built before it, rebuild the artifacts")
        if not freeze:
            runtime.write_text(text.replace(FREEZE, ""))
    return repo


def one_unload(repo: Path, model: str, settle_s: float) -> dict:
    triton = EmbeddedTriton(repo, load_models=[model]).start()
    try:
        assert triton.pid is not None
        stubs = children(triton.pid)
        time.sleep(settle_s)
        before = {pid: cpu_seconds(pid) or 0.0 for pid in stubs}
        last = dict(before)
        asked = time.monotonic()
        httpx.post(f"{triton.http_url}/v2/repository/models/{model}/unload", json={}, timeout=120).raise_for_status()
        while time.monotonic() - asked < 60:
            alive = {pid: c for pid in stubs if (c := cpu_seconds(pid)) is not None}
            last.update(alive)
            if not alive:
                break
            time.sleep(0.02)
        return {"stubs": len(stubs), "exit_s": round(time.monotonic() - asked, 2),
                "cpu_s": [round(last[pid] - before[pid], 3) for pid in stubs]}
    finally:
        triton.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifacts", type=Path, required=True)
    p.add_argument("--model", default="query_encoder")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--settle", type=float, default=3.0, help="seconds idle between loading and unloading")
    p.add_argument("--out", type=Path, default=Path("bench/results/stub_teardown.json"))
    args = p.parse_args()
    runs: dict[str, list[dict]] = {"frozen": [], "unfrozen": []}
    with tempfile.TemporaryDirectory() as tmp:
        repos = {k: repository_copy(args.artifacts, args.model, k == "frozen", Path(tmp)) for k in runs}
        for i in range(args.repeats):
            for kind in ("unfrozen", "frozen") if i % 2 == 0 else ("frozen", "unfrozen"):
                runs[kind].append(one_unload(repos[kind], args.model, args.settle))
                print(kind, runs[kind][-1], flush=True)
    summary = {kind: {"median_cpu_s_per_stub": statistics.median(c for r in rs for c in r["cpu_s"]),
                      "median_exit_s": statistics.median(r["exit_s"] for r in rs)} for kind, rs in runs.items()}
    summary["cpu_ratio_unfrozen_to_frozen"] = round(
        summary["unfrozen"]["median_cpu_s_per_stub"] / max(summary["frozen"]["median_cpu_s_per_stub"], 1e-3), 1)
    result = {"artifacts": str(args.artifacts), "model": args.model, "repeats": args.repeats,
              "summary": summary, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
