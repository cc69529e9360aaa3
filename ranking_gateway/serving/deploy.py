"""Live swap: put new artifacts (or personaliser weights) into service without stopping `serve`.

`POST /v1/admin/deploy` runs `Deployer.deploy`, one at a time:

1. resolve the new plan with `serve`'s own flags (`plan.resolve`: the same checks a restart makes);
2. lay the build's models out in the live repository under version-suffixed names and load them
   on Triton beside the serving ones (`live_repository`, explicit model control): the embedded
   Triton, or an external one started in explicit mode on a directory the gateway also sees at
   the same absolute path (`serve --triton-url URL --triton-live-repository DIR`, `start_external`);
3. load the index, tokenizers and token store with `serve`'s code (`ServingVersion.load`);
4. check the candidate: every model it needs READY, and canary searches through its pipeline
   (no cache, no admission gate) answering non-empty, undegraded, within the canary deadline;
5. warm its hot-query cache with the N most frequent recent searches (`--warm N`);
6. switch: one assignment of `gateway.current`; requests that took the old version finish on it;
7. drain the old version (its in-flight count to zero, or a timeout), then unload its models.

A candidate that fails 1-4 is refused: the old version keeps serving, what was loaded for the
candidate is unloaded, and the answer (JSON, 4xx/5xx) says why. Weights alone (`deploy
--personalizer-weights`) go through the same steps with the serving models (nothing loads on
Triton). Without a live repository (`serve --triton-url` alone: the gateway does not own that
Triton's models) a deploy that needs other models is refused with a 501.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from ranking_gateway.core.artifacts import ArtifactPaths
from ranking_gateway.core.errors import BackendUnavailable, CliError
from ranking_gateway.serving.admission import Overloaded
from ranking_gateway.serving.compatibility import reason_line
from ranking_gateway.serving.live_repository import LiveRepository
from ranking_gateway.serving.plan import ServingPlan, UnsupportedRetrieval, resolve
from ranking_gateway.serving.schemas import DEPLOY_BODY, RequestError, SearchRequest
from ranking_gateway.serving.version import ServingVersion, rebind

if TYPE_CHECKING:
    from ranking_gateway.serving.app import Gateway
    from ranking_gateway.serving.triton_client import TritonModels
    from ranking_gateway.serving.triton_server import EmbeddedTriton

log = logging.getLogger(__name__)

class DeployError(Exception):
    """A refused deploy: `status` and `code` for the JSON answer; the old version still serves."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass
class LiveTriton:
    """The live repository Triton loads from, and the embedded server whose start-up load list
    follows the serving version (so a supervisor restart loads what is being served); `triton`
    None for an external Triton (`start_external`), whose restarts are its owner's."""

    repository: LiveRepository
    names: dict[str, str]  # the first version's contract -> Triton names
    triton: EmbeddedTriton | None = None


@dataclass(frozen=True)
class DeployRequest:
    artifacts: Path | None = None  # None: keep the serving artifacts (a weights-only deploy)
    personalizer_weights: Path | None = None  # None: keep the serving weights
    rollback: bool = False  # to the version served before the last swap
    warm: int = 0  # warm the new version's cache with this many of the most frequent recent searches
    drain_timeout_s: float | None = None

    @classmethod
    def parse(cls, body: Any) -> DeployRequest:
        """A `POST /v1/admin/deploy` body (`schemas.DEPLOY_BODY`), paths absolute: the gateway
        resolves them on its own machine, whatever the caller's working directory was."""
        v = DEPLOY_BODY.parse(body)
        for name in ("artifacts", "personalizer_weights"):
            if v[name] is not None and not Path(v[name]).is_absolute():
                raise RequestError(422, "invalid_request", f"'{name}' must be an absolute path on the gateway's machine")
        request = cls(
            None if v["artifacts"] is None else Path(v["artifacts"]),
            None if v["personalizer_weights"] is None else Path(v["personalizer_weights"]),
            v["rollback"], v["warm"], v["drain_timeout_s"],
        )
        if request.rollback and (request.artifacts or request.personalizer_weights):
            raise RequestError(422, "invalid_request", "'rollback' takes no 'artifacts' or 'personalizer_weights'")
        if not request.rollback and request.artifacts is None and request.personalizer_weights is None:
            raise RequestError(422, "invalid_request", "give 'artifacts', 'personalizer_weights' or 'rollback': true")
        return request


class Deployer:
    def __init__(
        self,
        gateway: Gateway,
        live: LiveTriton | None,
        *,
        load_timeout_s: float = 300.0,
        drain_timeout_s: float = 30.0,
        canaries: int = 3,
        canary_timeout_ms: int | None = None,
    ) -> None:
        self.gateway = gateway
        self.live = live
        self.load_timeout_s = load_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.canaries = canaries
        # a canary gets at least 5 s: it runs beside the traffic on a loaded machine, and a
        # swap refused for one slow answer would be a false alarm
        self.canary_timeout_ms = canary_timeout_ms or max(gateway.settings.deadline_ms, 5000)
        self.previous: tuple[Path, Path | None] | None = None  # (artifacts, weights) served before the last swap
        self._lock = asyncio.Lock()

    def describe(self) -> dict:
        previous = None if self.previous is None else {
            "artifacts": str(self.previous[0]),
            "personalizer_weights": None if self.previous[1] is None else str(self.previous[1]),
        }
        return {"current": self.gateway.current.describe(), "previous": previous,
                "live_models": self.live is not None, "deploying": self._lock.locked()}

    async def deploy(self, request: DeployRequest) -> dict:
        """Swap to what `request` asks for; the report, or `DeployError` with the old version serving."""
        if self._lock.locked():
            raise DeployError(409, "deploy_in_progress", "another deploy is in progress; try again when it is done")
        async with self._lock:
            return await self._deploy(request)

    def _target(self, request: DeployRequest) -> tuple[Path, Path | None]:
        old = self.gateway.current
        if request.rollback:
            if self.previous is None:
                raise DeployError(409, "no_previous_version", "nothing to roll back to: no swap happened since serve started")
            return self.previous
        artifacts = request.artifacts or old.artifacts
        weights = request.personalizer_weights or old.personalizer_weights
        return artifacts, weights

    async def _resolve(self, artifacts: Path, weights: Path | None) -> tuple[ServingPlan, Any]:
        old = self.gateway.current
        base = self.gateway.settings
        # the event log stays where it is (the default `<artifacts>-events/` would follow the new directory)
        settings = replace(
            base, artifacts=artifacts,
            personalization=replace(base.personalization, weights=weights, event_log=old.plan.event_log),
        )
        try:
            plan = await anyio.to_thread.run_sync(resolve, settings)
        except (CliError, OSError, ValueError) as exc:
            raise DeployError(422, "invalid_artifacts", f"{artifacts} cannot be served: {exc}") from None
        return plan, settings

    async def _deploy(self, request: DeployRequest) -> dict:
        started = time.monotonic()
        timings: dict[str, float] = {}

        def lap(name: str, since: float) -> float:
            now = time.monotonic()
            timings[name] = round((now - since) * 1000, 1)
            return now

        gw = self.gateway
        old = gw.current
        artifacts, weights = self._target(request)
        plan, settings = await self._resolve(artifacts, weights)
        t = lap("resolve", started)
        same_models = (
            plan.version_key == old.plan.version_key
            and plan.paths.root.resolve() == old.artifacts.resolve()
            and plan.triton_models == old.model_names
        )
        if same_models and weights == old.personalizer_weights:
            raise DeployError(409, "already_serving", f"{artifacts} (version {plan.version_key}) is already serving")
        loaded: list[str] = []  # on Triton for the candidate (a refusal unloads them)
        added: list[str] = []  # in the live repository for the candidate (a refusal removes them)
        try:
            if same_models:
                names = dict(old.models.names)
            else:
                names = await self._load_models(plan, loaded, added)
            t = lap("load_models", t)
            try:
                new = await anyio.to_thread.run_sync(
                    ServingVersion.load, plan, settings, gw.shared, names,
                    lambda index: rebind(old.personalization, index, settings),
                )
            except (CliError, OSError, ValueError) as exc:
                raise DeployError(422, "invalid_artifacts", f"{artifacts} could not be loaded: {exc}") from None
            t = lap("load_version", t)
            ready = await new.models.ready_models(new.model_names)
            unready = sorted(name for name, ok in ready.items() if not ok)
            if unready:
                raise DeployError(503, "models_not_ready", f"Triton does not report {', '.join(unready)} READY")
            canaries = await self._canaries(new)
            t = lap("canaries", t)
            warmed = await self._warm(new, request.warm)
            t = lap("warm", t)
        except BaseException as exc:
            keep = set(old.triton_names)
            await self._unload(loaded, keep=keep)
            if self.live is not None:
                self.live.repository.remove([name for name in added if name not in keep])
            if isinstance(exc, DeployError):
                log.error("deploy of %s refused (%s): %s", artifacts, exc.code, exc)
            raise

        gw.current = new  # the switch: requests from here on take the new version
        switched_s = time.monotonic() - started
        t = lap("switch", t)
        if self.live is not None and self.live.triton is not None:
            self.live.triton.load_models = new.triton_names  # what a restart of Triton loads
        self.previous = (old.artifacts, old.personalizer_weights)
        log.info("live swap: now serving %s (version %s), %.0f ms after the request", artifacts, plan.version_key,
                 switched_s * 1000)

        drained = await self._drain(old, request.drain_timeout_s)
        t = lap("drain", t)
        stale = [name for name in old.triton_names if name not in set(new.triton_names)]
        unloaded = await self._unload(stale, keep=set())
        lap("unload", t)
        timings["total"] = round((time.monotonic() - started) * 1000, 1)
        return {
            "status": "swapped",
            "rollback": request.rollback,
            "from": old.describe(),
            "to": new.describe(),
            "models_loaded": loaded,
            "models_unloaded": unloaded,
            "canaries": canaries,
            "warmed": warmed,
            "drained": drained,
            "old_inflight_left": old.inflight,
            "switched_after_ms": round(switched_s * 1000, 1),
            "timings_ms": timings,
        }

    async def _load_models(self, plan: ServingPlan, loaded: list[str], added: list[str]) -> dict[str, str]:
        """The candidate's models loaded on Triton beside the serving ones; records the live
        repository's new entries in `added` and each model asked to load in `loaded` as it goes
        (what a refusal removes and unloads)."""
        if self.live is None:
            raise DeployError(
                501, "live_swap_unsupported",
                "this gateway serves an external Triton (serve --triton-url) without a live repository, so it "
                "does not manage that Triton's models: start that Triton in explicit model-control mode on a "
                "directory the gateway shares and serve with --triton-live-repository DIR, or use the embedded Triton",
            )
        try:
            names = self.live.repository.add(ArtifactPaths(plan.paths.root), plan.version_key, plan.triton_models)
        except OSError as exc:
            raise DeployError(422, "invalid_artifacts", f"{plan.paths.root}: {exc}") from None
        added.extend(names.values())
        models = self.gateway.shared.models
        for name in names.values():
            loaded.append(name)  # a failed load may leave it half-loaded: unload it too
            try:
                await models.load_model(name, self.load_timeout_s)
            except BackendUnavailable as exc:
                reason = await self._reason(name) or str(exc)
                raise DeployError(422, "model_load_failed", f"Triton could not load {name!r}: {reason}") from None
        return names

    async def _reason(self, name: str) -> str | None:
        try:
            index = await self.gateway.shared.models.model_index()
        except Exception:  # noqa: BLE001 - the reason is a nicety; the load error stands without it
            return None
        for model in index:
            if model.get("name") == name and model.get("reason"):
                return reason_line(model["reason"])
        return None

    def _canary_requests(self, new: ServingVersion) -> list[SearchRequest]:
        """The most frequent recent queries, else a few documents' titles (or opening words): real
        traffic where there is some, and queries the new index can answer where there is none."""
        n_docs = len(new.index)
        if n_docs == 0:
            raise DeployError(422, "canary_failed", "the new index has no documents")
        candidates = min(self.gateway.limits.default_candidates, n_docs)
        rerank = new.plan.rerank is not None
        queries = [shape.query for shape in self.gateway.recent.top(self.canaries)]
        rows = [0, n_docs // 2, n_docs - 1]
        for row in rows[: max(0, self.canaries - len(queries))]:
            doc = new.index.documents[row]
            queries.append(doc.title or " ".join(doc.text.split()[:8]))
        return [SearchRequest(q, min(5, candidates), candidates, rerank, None, None, self.canary_timeout_ms)
                for q in queries]

    async def _canaries(self, new: ServingVersion) -> list[dict]:
        report = []
        for request in self._canary_requests(new):
            t0 = time.monotonic()
            try:
                ranked = await new.search.rank_uncached(request)
            except (BackendUnavailable, UnsupportedRetrieval, asyncio.TimeoutError) as exc:
                raise DeployError(422, "canary_failed", f"canary search {request.query!r} failed: {exc}") from None
            ms = (time.monotonic() - t0) * 1000
            if ranked.degraded_reasons:
                raise DeployError(422, "canary_failed", f"canary search {request.query!r} answered degraded "
                                  f"({', '.join(ranked.degraded_reasons)}) after {ms:.0f} ms")
            if not ranked.candidates:
                raise DeployError(422, "canary_failed", f"canary search {request.query!r} found nothing")
            if request.rerank and not ranked.reranked:
                raise DeployError(422, "canary_failed", f"canary search {request.query!r} was not reranked")
            report.append({"query": request.query, "results": len(ranked.candidates), "ms": round(ms, 1)})
        return report

    async def _warm(self, new: ServingVersion, n: int) -> int:
        """The new version's cache, filled with the `n` most frequent recent searches (through its
        pipeline, so under its cache keys); one that fails is skipped, not a refusal."""
        warmed = 0
        for shape in self.gateway.recent.top(n):
            try:
                await new.search.search(shape.request(self.gateway.limits.default_k))
                warmed += 1
            except (BackendUnavailable, UnsupportedRetrieval, Overloaded, asyncio.TimeoutError) as exc:
                log.warning("warming %r skipped: %s", shape.query, exc)
        return warmed

    async def _drain(self, old: ServingVersion, timeout_s: float | None) -> bool:
        """Until no request runs on the old version (True), or the timeout (False: its models are
        unloaded anyway, and the stragglers' Triton calls fail or degrade)."""
        deadline = time.monotonic() + (self.drain_timeout_s if timeout_s is None else timeout_s)
        while old.inflight > 0:
            if time.monotonic() >= deadline:
                log.warning("live swap: %d request(s) still on the old version after the drain timeout", old.inflight)
                return False
            await asyncio.sleep(0.05)
        return True

    async def _unload(self, names: list[str], keep: set[str]) -> list[str]:
        """Unload `names` (except `keep`) from Triton and drop their live-repository entries."""
        names = [n for n in names if n not in keep]
        if not names or self.live is None:
            return []
        models = self.gateway.shared.models
        done = []
        for name in names:
            try:
                await models.unload_model(name)
                done.append(name)
            except BackendUnavailable as exc:
                log.warning("live swap: %s", exc)
        self.live.repository.remove(names)
        return done


def start_external(directory: Path, url: str, plan: ServingPlan, load_timeout_s: float = 300.0,
                   wait_s: float = 30.0) -> LiveTriton:
    """`serve --triton-url URL --triton-live-repository DIR`: lay the build's models out in DIR
    (which the external Triton was started on, in explicit mode, at the same absolute path: the
    entries' symlinks are absolute) and load them there, so deploys swap as with the embedded
    Triton. Every way this cannot work is a one-line `CliError`, before the gateway starts."""
    repository = _writable_repository(directory)
    try:
        names = repository.add(ArtifactPaths(plan.paths.root), plan.version_key, plan.triton_models)
    except OSError as exc:
        raise CliError(f"--triton-live-repository {repository.path}: {exc}") from None
    try:
        asyncio.run(_load_external(url, repository.path, list(names.values()), load_timeout_s, wait_s))
    except CliError:
        repository.remove(list(names.values()))  # a refused start leaves no entries of its own behind
        raise
    return LiveTriton(repository, names)


def _writable_repository(directory: Path) -> LiveRepository:
    """The live repository at `directory` (made absolute: Triton resolves the same path), checked
    writable now rather than at the first deploy."""
    path = directory.expanduser().absolute()
    try:
        repository = LiveRepository(path)
        with tempfile.NamedTemporaryFile(dir=repository.path, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise CliError(f"--triton-live-repository {path} is not a writable directory: {exc.strerror or exc}") from None
    return repository


async def _load_external(url: str, root: Path, names: list[str], load_timeout_s: float, wait_s: float) -> None:
    """`names` loaded on the Triton at `url`; on a refusal, those asked so far unloaded again."""
    from ranking_gateway.serving.triton_client import TritonModels

    models = TritonModels(url, timeout_s=load_timeout_s, chunk_size=1)
    try:
        index = await _answering_index(models, wait_s)
        unseen = [name for name in names if name not in {m.get("name") for m in index}]
        if unseen:
            raise CliError(
                f"the Triton at {url} does not see {unseen[0]!r} in its model repository: start it with "
                f"--model-repository={root} --model-control-mode=explicit (the same absolute path on both sides)"
            )
        for i, name in enumerate(names):
            try:
                await models.load_model(name, load_timeout_s)
            except BackendUnavailable as exc:
                message = await _load_refusal(models, url, name, exc)
                for asked in names[: i + 1]:  # a failed load may leave it half-loaded
                    with contextlib.suppress(BackendUnavailable):
                        await models.unload_model(asked)
                raise CliError(message) from None
    finally:
        await models.close()


async def _answering_index(models: TritonModels, wait_s: float) -> list[dict]:
    """Triton's repository index, once it answers (an external Triton may be starting with us)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await models.model_index()
        except Exception as exc:  # noqa: BLE001 - unreachable, or not up yet: retried, then one line
            if time.monotonic() >= deadline:
                raise CliError(f"the Triton at {models.url} did not answer within {wait_s:.0f} s: "
                               f"{reason_line(str(exc))}") from None
            await asyncio.sleep(0.5)


async def _load_refusal(models: TritonModels, url: str, name: str, exc: BackendUnavailable) -> str:
    """The start-up error for a model Triton did not load: not in explicit mode, or its reason."""
    if "not allowed" in str(exc):  # Triton refuses model control outside explicit mode
        return (f"the Triton at {url} refuses to load models ({reason_line(str(exc))}): "
                "start it with --model-control-mode=explicit to serve with --triton-live-repository")
    try:
        index = await models.model_index()
    except Exception:  # noqa: BLE001 - the reason is a nicety; the load error stands without it
        index = []
    reason = next((m["reason"] for m in index if m.get("name") == name and m.get("reason")), None)
    return f"the Triton at {url} could not load {name!r}: {reason_line(reason or str(exc))}"
