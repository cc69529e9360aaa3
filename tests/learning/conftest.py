"""Synthetic event logs in the gateway's own format (JSONL segments of impression and event
records, as `personalization.service` and `/v1/events` write them) for the learning tests."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from ranking_gateway.personalization.scorer import sigmoid

SHOWN = 10
# clicks that follow the profile: logit = W.f - log(position) (W over primary, retrieval,
# profile_sim, recency, bias; profile_sim is centred on 0.2 with a 0.1 spread)
PROFILE_W = np.array([0.5, 0.0, 12.0, 0.0, -4.4])


def write_log(
    path: Path, n_requests: int, *, clicks: str = "profile", seed: int = 0, start_ts: float = 1_000.0,
    prefix: str = "r", click_rate: float = 0.12,
) -> Path:
    """Append `n_requests` impressions (one per second from `start_ts`) and their clicks (5 s
    later) to the JSONL segment `path`. `clicks`: "profile" (W.f with a position bias) or
    "noise" (each shown document clicked with `click_rate`, whatever it is and wherever shown)."""
    rng = np.random.default_rng(seed)
    positions = np.arange(1, SHOWN + 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        for r in range(n_requests):
            ts = start_ts + r
            primary = np.sort(rng.normal(size=SHOWN))[::-1]  # shown in the ranking's order
            feats = np.column_stack([primary, rng.normal(size=SHOWN), rng.normal(0.2, 0.1, size=SHOWN),
                                     np.zeros(SHOWN), np.ones(SHOWN)])
            if clicks == "profile":
                p = sigmoid(feats @ PROFILE_W - np.log(positions))
            else:
                p = np.full(SHOWN, click_rate)
            clicked = rng.random(SHOWN) < p
            rid, user = f"{prefix}{r}", f"u{r % 40}"
            ids = [f"doc-{rng.integers(10_000)}" for _ in range(SHOWN)]
            fh.write(json.dumps({"kind": "impression", "request_id": rid, "user_id": user, "ts": ts,
                                 "personalized": True, "doc_ids": ids, "features": np.round(feats, 6).tolist(),
                                 "query": "q"}) + "\n")
            for i in np.flatnonzero(clicked):
                fh.write(json.dumps({"kind": "event", "user_id": user, "doc_id": ids[i], "type": "click",
                                     "ts": ts + 5.0, "request_id": rid, "position": int(i + 1)}) + "\n")
    return path


class FakeGateway:
    """`GET/POST /v1/admin/deploy` of a gateway, answered in-process through `httpx.get` and
    `httpx.post` (what `learn` and `deploy`'s client call): it records the deploys it took and
    refuses them with `refuse` set."""

    def __init__(self) -> None:
        self.current: str | None = None
        self.previous: str | None = None
        self.deploys: list[dict] = []
        self.refuse: tuple[int, str] | None = None

    def get(self, url: str, **kwargs) -> httpx.Response:
        assert url.endswith("/v1/admin/deploy")
        body = {"current": {"artifacts": "/srv/a", "version": "v1", "personalizer_weights": self.current},
                "previous": None if self.previous is None else {"artifacts": "/srv/a", "personalizer_weights": self.previous}}
        return httpx.Response(200, json=body, request=httpx.Request("GET", url))

    def post(self, url: str, json: dict, **kwargs) -> httpx.Response:
        assert url.endswith("/v1/admin/deploy")
        request = httpx.Request("POST", url)
        if self.refuse is not None:
            return httpx.Response(self.refuse[0], json={"error": {"code": self.refuse[1], "message": "no"}}, request=request)
        assert Path(json["personalizer_weights"]).is_absolute()
        self.deploys.append(json)
        self.previous, self.current = self.current, json["personalizer_weights"]
        report = {"to": {"artifacts": "/srv/a", "version": "v1", "personalizer_weights": self.current},
                  "switched_after_ms": 1.0}
        return httpx.Response(200, json=report, request=request)


@pytest.fixture
def fake_gateway(monkeypatch: pytest.MonkeyPatch) -> FakeGateway:
    gateway = FakeGateway()
    monkeypatch.setattr(httpx, "get", gateway.get)
    monkeypatch.setattr(httpx, "post", gateway.post)
    return gateway
