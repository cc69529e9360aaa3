"""deploy/kubernetes: every manifest against Kubernetes' own schemas (offline, strict: an unknown
or misplaced field fails), and against this project: the HPA's metric is one the gateway
exports, the probes hit routes the app defines, the gateway's command parses and names the
Services it reaches, and the build lands where the serving pods mount it."""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ranking_gateway.cli import build_parser
from ranking_gateway.serving.metrics import GatewayMetrics
from ranking_gateway.serving.routes import ROUTES
from ranking_gateway.serving.search import SearchPipeline

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
ADAPTER_VALUES = DEPLOY / "prometheus-adapter" / "values.yaml"
# the schemas the manifests must pass: an old release still widely run, and the newest that the
# pinned kubernetes-validate ships (an API removed in between fails one of them)
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")


def manifest_files() -> list[Path]:
    return sorted(p for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


def resources() -> list[dict]:
    return [doc for path in manifest_files() for doc in yaml.safe_load_all(path.read_text()) if doc]


def one(kind: str, name: str) -> dict:
    found = [r for r in resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def container(workload: dict, name: str) -> dict:
    return next(c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def mount_of(workload: dict, container_name: str, path: str) -> dict:
    """The volume mount at `path`, with the claim its volume names."""
    spec = workload["spec"]["template"]["spec"]
    mount = next(m for m in container(workload, container_name)["volumeMounts"] if m["mountPath"] == path)
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    return {**mount, "claim": volume.get("persistentVolumeClaim", {}).get("claimName")}


def cli_args(workload: dict, name: str) -> object:
    """The container's command as the real CLI parses it (an unknown flag fails here)."""
    command = container(workload, name)["command"]
    assert command[0] == "ranking-gateway"
    return build_parser().parse_args(command[1:])


def waits_for(workload: dict) -> str:
    """The file a workload's first init container waits for (`until [ -f FILE ]`)."""
    script = workload["spec"]["template"]["spec"]["initContainers"][0]["command"][-1]
    found = re.search(r"until \[ -f (\S+) \]", script)
    assert found, script
    return found.group(1)


def adapter_name(rule: dict) -> str:
    """The metric name a prometheus-adapter rule serves: its `name.as` (Go's ${1}) applied to the
    series its seriesQuery discovers."""
    series = rule["seriesQuery"].split("{")[0]
    replacement = re.sub(r"\$\{(\d+)\}", r"\\g<\1>", rule["name"]["as"])
    return re.sub(rule["name"]["matches"], replacement, series)


def service_port(name: str, port: int) -> dict:
    ports = [p for p in one("Service", name)["spec"]["ports"] if p["port"] == port]
    assert ports, f"Service {name} has no port {port}"
    return ports[0]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_every_manifest_validates_strictly(path: Path, version: str) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs, f"{path.name} holds no resource"
    for doc in docs:
        # validate() raises on a schema error, and on a kind/apiVersion it has no schema for (the
        # CLI only warns about the latter)
        used = kubernetes_validate.validate(doc, version, strict=True)
        assert used == version.rsplit(".", 1)[0], f"validated against {used}, not {version}"


def test_strict_validation_rejects_an_unknown_field() -> None:
    """The validator itself: strict mode is what catches a misspelt or misplaced field."""
    service = {**one("Service", "redis"), "spec": {**one("Service", "redis")["spec"], "selectr": {}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, KUBERNETES_VERSIONS[0], strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]


def test_hpa_metric_is_one_the_gateway_exports() -> None:
    """The HPA's Pods metric comes from the adapter rule in prometheus-adapter/values.yaml, over
    series that a GatewayMetrics registry really renders, for the stage the search observes."""
    hpa = one("HorizontalPodAutoscaler", "gateway")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"}
    names = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert names, "the HPA has no Pods metric"

    metrics = GatewayMetrics()
    metrics.observe_stage("total", 0.1)
    exposition = metrics.exposition().decode()
    families = {f.name: f.type for f in text_string_to_metric_families(exposition)}
    rendered = {line.split(" ")[0] for line in exposition.splitlines() if not line.startswith("#")}

    rules = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]
    for name in names:
        assert families.get(name) == "histogram", f"{name} is not a histogram GatewayMetrics exports: {families}"
        rule = next((r for r in rules if adapter_name(r) == name), None)
        assert rule is not None, f"no prometheus-adapter rule serves {name}"
        # every series the rule reads, with its stage label, is one the registry renders
        queried = re.findall(r"(ranking_gateway_\w+)\{[^}]*stage=\"(\w+)\"", rule["seriesQuery"] + rule["metricsQuery"])
        assert queried, rule
        for series, stage in queried:
            assert f'{series}{{stage="{stage}"}}' in rendered, f"{series}{{stage={stage!r}}} not in {sorted(rendered)}"
            # and the search path observes that stage (test_app.py checks it end to end, with Triton)
            assert f'self._stage("{stage}"' in inspect.getsource(SearchPipeline.search)


def test_gateway_probes_hit_routes_the_app_defines() -> None:
    gateway = container(one("Deployment", "gateway"), "gateway")
    get_routes = {r.path for r in ROUTES if "GET" in (r.methods or ())}
    probes = {kind: gateway[kind]["httpGet"] for kind in ("readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz" and probes["livenessProbe"]["path"] == "/healthz"
    for probe in probes.values():
        assert probe["path"] in get_routes, f"{probe['path']} is not a GET route of the gateway: {sorted(get_routes)}"
        assert probe["port"] in {p["name"] for p in gateway["ports"]}


def test_gateway_command_names_the_services_it_reaches() -> None:
    args = cli_args(one("Deployment", "gateway"), "gateway")
    assert args.command == "serve"
    triton_host, triton_port = args.triton_url.rsplit(":", 1)
    redis = urlsplit(args.redis_url)
    for service, port in ((triton_host, int(triton_port)), (redis.hostname, redis.port), ("gateway", args.port)):
        # the Service has the port, selects its workload's pods, and targets a port they open
        target = service_port(service, port)["targetPort"]
        workload = next(r for r in resources() if r["kind"] in ("Deployment", "StatefulSet")
                        and r["metadata"]["name"] == service)
        pod = workload["spec"]["template"]
        assert one("Service", service)["spec"]["selector"] == pod["metadata"]["labels"]
        opened = [p for c in pod["spec"]["containers"] for p in c.get("ports", [])]
        assert {"name": target, "containerPort": port} in opened, f"{service}:{port} -> {target}: {opened}"


def test_the_build_lands_where_the_serving_pods_mount_it() -> None:
    job = one("Job", "build-artifacts")
    build = cli_args(job, "build")
    assert build.command == "build"
    # the build's --artifacts, relative to the volume it is on
    mounts = container(job, "build")["volumeMounts"]
    data = next(m for m in mounts if str(build.artifacts).startswith(m["mountPath"] + "/"))
    built = str(build.artifacts.relative_to(data["mountPath"]))
    claim = job["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert one("PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteMany"]

    gateway = one("Deployment", "gateway")
    serve = cli_args(gateway, "gateway")
    mount = mount_of(gateway, "gateway", str(serve.artifacts))
    assert (mount["claim"], mount["subPath"], mount["readOnly"]) == (claim, built, True)

    triton = one("Deployment", "triton")
    command = container(triton, "triton")["command"]
    repository = next(a.split("=", 1)[1] for a in command if a.startswith("--model-repository="))
    mount = mount_of(triton, "triton", repository)
    assert (mount["claim"], mount["subPath"], mount["readOnly"]) == (claim, f"{built}/model_repository", True)
    # the Job's init container waits for the corpus the build reads, and the serving pods' for
    # the build's manifest where the Job writes it
    assert waits_for(job) == str(build.corpus)
    for workload in (gateway, triton):
        assert waits_for(workload) == f"{data['mountPath']}/{built}/manifest.json"


def test_triton_has_a_gpu_and_shared_memory() -> None:
    triton = one("Deployment", "triton")
    main = container(triton, "triton")
    assert main["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert main["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert main["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    shm = mount_of(triton, "triton", "/dev/shm")
    volume = next(v for v in triton["spec"]["template"]["spec"]["volumes"] if v["name"] == shm["name"])
    assert volume["emptyDir"]["medium"] == "Memory"


def test_kustomize_renders_what_validates() -> None:
    """`kubectl kustomize` (built-in kustomize; no cluster) renders the directory, and what it
    renders validates too. Skipped where kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    proc = subprocess.run([kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rendered = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert len(rendered) == len(resources())
    for doc in rendered:
        kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[0], strict=True)
