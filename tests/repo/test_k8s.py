"""Kubernetes manifests (deploy/k8s) and the Ray Serve config (deploy/ray): validated, never applied.

No cluster runs where this project is developed. The manifests pass `kubernetes-validate --strict`
(offline JSON schemas from PyPI) for the Kubernetes versions below, and the checks here hold them
to the real service: probe paths are routes of `create_app()`, ports are the port the container's
command serves, selectors match the pod labels, grace periods outlast the drain, a GPU request
equals its limit, every image tag is pinned, and the autoscalers read a metric the service exports.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpu_service.cli import graceful_shutdown_s, parse_args
from gpu_service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SERVE_CONFIG = ROOT / "deploy" / "ray" / "serve_config.yaml"
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
CUSTOM_KINDS = {"ScaledObject", "PodMonitor", "RayService"}
"""Custom resources (KEDA, prometheus-operator, KubeRay): no schema offline, so the tests below check them."""
GPU = "nvidia.com/gpu"
RAY_DEFAULT_MAX_ONGOING_REQUESTS = 5


def resources() -> list[dict[str, Any]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def resource(kind: str, name: str | None = None) -> dict[str, Any]:
    [match] = [r for r in resources() if r["kind"] == kind and name in (None, r["metadata"]["name"])]
    return match


def container(kind: str = "Deployment") -> dict[str, Any]:
    [only] = resource(kind)["spec"]["template"]["spec"]["containers"]
    return only  # type: ignore[no-any-return]


def pod_specs() -> list[dict[str, Any]]:
    """Every pod template: the Deployment's and the RayService's head and worker groups."""
    cluster = resource("RayService")["spec"]["rayClusterConfig"]
    return [resource("Deployment")["spec"]["template"]["spec"], cluster["headGroupSpec"]["template"]["spec"],
            *(group["template"]["spec"] for group in cluster["workerGroupSpecs"])]


def gpu_pod_specs() -> list[dict[str, Any]]:
    return [spec for spec in pod_specs() if any(GPU in c["resources"].get("limits", {}) for c in spec["containers"])]


def literal_env(container_: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container_.get("env", []) if "value" in e}


def serve_config() -> dict[str, Any]:
    return yaml.safe_load(SERVE_CONFIG.read_text())  # type: ignore[no-any-return]


def serve_deployment() -> dict[str, Any]:
    [application] = serve_config()["applications"]
    [deployment] = application["deployments"]
    return deployment  # type: ignore[no-any-return]


def pinned_ray_version() -> str:
    """The `ray[serve]==X` pin of the `ray` extra (in whichever pyproject declares it)."""
    for pyproject in (ROOT / "pyproject.toml", *ROOT.glob("*/pyproject.toml")):
        extras = tomllib.loads(pyproject.read_text()).get("project", {}).get("optional-dependencies", {})
        for requirement in extras.get("ray", []):
            if match := re.fullmatch(r"ray\[serve\]==([\w.]+)", requirement):
                return match.group(1)
    raise AssertionError("no extra `ray` pinning ray[serve]==<version> in any pyproject.toml")


@pytest.mark.slow  # starts a process
def test_manifests_pass_kubernetes_validate_strict() -> None:
    validator = shutil.which("kubernetes-validate") or str(Path(sys.executable).parent / "kubernetes-validate")
    if not Path(validator).exists():
        pytest.skip("kubernetes-validate is not installed (pip install -e '.[test]')")
    versions = [arg for version in KUBERNETES_VERSIONS for arg in ("-k", version)]
    out = subprocess.run([validator, "--strict", *versions, *sorted(map(str, K8S.glob("*.yaml")))],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ERROR" not in out.stdout, out.stdout + out.stderr
    passed = out.stdout.count(" passed for resource ")
    core = [r for r in resources() if r["kind"] not in CUSTOM_KINDS]
    assert passed == len(core) * len(KUBERNETES_VERSIONS), out.stdout
    unvalidated = set(re.findall(r"Couldn't find schema for kind (\w+)", out.stdout))
    assert unvalidated == CUSTOM_KINDS, f"only the custom resources may lack a schema: {unvalidated}"


def test_probes_use_routes_and_the_port_the_container_serves() -> None:
    from gpu_service.app import create_app

    routes = {getattr(route, "path", None) for route in create_app(Settings(warm_defaults=False)).routes}
    service = container()
    assert service["command"][0] == "gpu-service"
    port = parse_args(service["command"][1:]).port
    ports = {p["name"]: p["containerPort"] for p in service["ports"]}
    assert ports == {"http": port}, "the container declares the port its command serves"
    for name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = service[name]
        target = probe.get("httpGet") or probe["tcpSocket"]
        assert ports.get(target["port"], target["port"]) == port, f"{name} probes another port: {target}"
        if "httpGet" in probe:
            assert probe["httpGet"]["path"] in routes, f"{name} probes {probe['httpGet']['path']}, not a route"
    # /health is 503 while the models load and while draining: right for startup and readiness ...
    for name in ("startupProbe", "readinessProbe"):
        assert service[name]["httpGet"]["path"] == "/health"
    # ... wrong for liveness, which must not fail (and restart the pod) during a model load.
    assert service["livenessProbe"].get("httpGet", {}).get("path") != "/health"
    startup = service["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= Settings().model_load_timeout_s


def test_selectors_match_the_pod_labels() -> None:
    deployment = resource("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    port_names = {p["name"] for p in container()["ports"]}

    def selects_the_pods(selector: dict[str, str], what: str) -> None:
        assert selector and selector.items() <= labels.items(), f"{what} selects {selector}, pods are {labels}"

    selects_the_pods(deployment["spec"]["selector"]["matchLabels"], "the Deployment")
    selects_the_pods(resource("PodDisruptionBudget")["spec"]["selector"]["matchLabels"], "the PodDisruptionBudget")
    monitor = resource("PodMonitor")["spec"]
    selects_the_pods(monitor["selector"]["matchLabels"], "the PodMonitor")
    assert {endpoint["port"] for endpoint in monitor["podMetricsEndpoints"]} <= port_names
    services = [r for r in resources() if r["kind"] == "Service"]
    assert {s["spec"].get("clusterIP") for s in services} == {None, "None"}, "one ClusterIP and one headless Service"
    for service in services:
        selects_the_pods(service["spec"]["selector"], f"Service {service['metadata']['name']}")
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    headless = next(s for s in services if s["spec"].get("clusterIP") == "None")
    assert headless["spec"]["publishNotReadyAddresses"] is False, "DNS must list only ready pods"
    for scaler in (resource("HorizontalPodAutoscaler"), resource("ScaledObject")):
        target = scaler["spec"]["scaleTargetRef"]
        assert (target.get("kind", "Deployment"), target["name"]) == ("Deployment", deployment["metadata"]["name"])


def test_termination_grace_outlasts_the_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    service = container()
    for name, value in literal_env(service).items():
        monkeypatch.setenv(name, value)
    drain = Settings.from_env().drain_timeout_s
    pre_stop = service["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    longest_stop = int(pre_stop[1]) + graceful_shutdown_s(drain) + drain
    grace = resource("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > longest_stop, f"grace {grace} s, but a stop may take {longest_stop} s"

    [application] = serve_config()["applications"]
    ray_drain = float(application["runtime_env"]["env_vars"]["GPU_DRAIN_TIMEOUT"])
    ray_shutdown = serve_deployment()["graceful_shutdown_timeout_s"]
    assert ray_shutdown > ray_drain, "Ray would kill a replica before its drain ends"
    for spec in gpu_pod_specs()[1:]:  # the RayService's GPU workers
        assert spec["terminationGracePeriodSeconds"] > ray_shutdown


def test_a_gpu_request_equals_its_limit() -> None:
    assert len(gpu_pod_specs()) == 2, "the Deployment and the RayService's workers run on GPUs"
    for spec in pod_specs():
        for c in spec["containers"]:
            requests, limits = c["resources"].get("requests", {}), c["resources"].get("limits", {})
            assert requests.get(GPU) == limits.get(GPU), f"{c['name']}: GPU request {requests} != limit {limits}"
    for spec in gpu_pod_specs():
        assert spec["nodeSelector"] and any(t["key"] == GPU for t in spec["tolerations"])


def test_every_image_tag_is_pinned() -> None:
    images = [c["image"] for spec in pod_specs() for c in spec["containers"]]
    for image in images:
        name, _, tag = image.rpartition("/")[2].partition(":")
        assert "@sha256:" in image or (tag and tag != "latest" and re.fullmatch(r"v?\d+(\.\d+)+[\w.-]*", tag)), image
    ray_image = re.search(r"^FROM (\S+)", (ROOT / "deploy" / "docker" / "Dockerfile.ray").read_text(), re.M)
    assert ray_image and ray_image.group(1).startswith(f"rayproject/ray:{pinned_ray_version()}-")
    assert resource("RayService")["spec"]["rayClusterConfig"]["rayVersion"] == pinned_ray_version()


def test_pods_load_models_offline_from_a_volume_with_shared_memory() -> None:
    claims = {r["metadata"]["name"] for r in resources() if r["kind"] == "PersistentVolumeClaim"}
    for spec in gpu_pod_specs():
        volumes = {v["name"]: v for v in spec["volumes"]}
        [c] = spec["containers"]
        assert literal_env(c)["HF_HUB_OFFLINE"] == "1"
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"]["medium"] == "Memory"
        models = volumes[mounts["/models"]["name"]]["persistentVolumeClaim"]
        assert mounts["/models"]["readOnly"] and models["claimName"] in claims
        assert literal_env(c)["GPU_MODEL_DIRS"] == "/models"


def test_autoscalers_read_the_queue_depth_the_service_exports() -> None:
    from gpu_service.runtime.metrics import Metrics

    metrics = Metrics()
    metrics.watch(lambda: 3, lambda: [])
    exported = metrics.render().decode()
    [hpa_metric] = resource("HorizontalPodAutoscaler")["spec"]["metrics"]
    name = hpa_metric["pods"]["metric"]["name"]
    assert f"\n{name} 3.0\n" in exported, f"the service exports no gauge {name}"
    [rule] = yaml.safe_load(resource("ConfigMap")["data"]["config.yaml"])["rules"]
    assert rule["seriesQuery"].startswith(f"{name}{{") and rule["name"]["as"] == name
    [trigger] = resource("ScaledObject")["spec"]["triggers"]
    assert f"{name}{{" in trigger["metadata"]["query"]
    assert trigger["metadata"]["threshold"] == hpa_metric["pods"]["target"]["averageValue"], "the same target"


def test_the_rayservice_runs_the_serve_config() -> None:
    embedded = yaml.safe_load(resource("RayService")["spec"]["serveConfigV2"])
    assert embedded["applications"] == serve_config()["applications"]


def test_the_serve_config_is_valid_for_ray_and_feeds_the_batcher() -> None:
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install -e './service[ray]')")
    from ray.serve.schema import ServeDeploySchema

    from gpu_service import ray_app

    ServeDeploySchema.model_validate(serve_config())
    [application] = serve_config()["applications"]
    module, _, attribute = application["import_path"].partition(":")
    assert module == ray_app.__name__ and getattr(ray_app, attribute) is ray_app.app
    deployment = serve_deployment()
    assert deployment["name"] == ray_app.DEPLOYMENT_NAME
    assert deployment["ray_actor_options"]["num_gpus"] == 1
    target = deployment["autoscaling_config"]["target_ongoing_requests"]
    assert deployment["max_ongoing_requests"] >= 2 * target > RAY_DEFAULT_MAX_ONGOING_REQUESTS
