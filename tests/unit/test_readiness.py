"""The app's two readiness options for serving platforms (Ray Serve uses both; tests/soak/test_ray_serve.py
runs them on a real Ray cluster): warm-up before start-up returns, and `/health` for a group.

In-process (`TestClient` runs the real app and its lifespan): quick, so they run in `make test`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from gpu_service.app import create_app
from gpu_service.settings import Settings


def test_warm_before_serving_finishes_the_warm_up_before_start_up_returns(tmp_path: Path) -> None:
    """A platform that routes to a replica as soon as start-up returns never sees it "starting":
    here the default fails to load, and the first answer already says so."""
    broken = tmp_path / "broken-embedder"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    app = create_app(Settings(default_models={"embed": str(broken)}), warm_before_serving=True)
    with TestClient(app) as client:
        body = client.get("/health").json()
    assert body["status"] == "degraded", body
    assert body["problems"][0].startswith(f"MODEL_EMBED={str(broken)!r} is not loaded")


def test_health_answers_the_worse_of_the_replica_and_its_group() -> None:
    group = ("starting", ["1 of 2 replicas running"])

    async def group_health() -> tuple[str, list[str]]:
        return group

    with TestClient(create_app(Settings(warm_defaults=False), group_health=group_health)) as client:
        starting = client.get("/health")
        group = ("degraded", ["deployment UNHEALTHY: 1 of 2 replicas running"])
        degraded = client.get("/health")
        group = ("ok", [])
        ok = client.get("/health")
    assert starting.status_code == 503 and starting.json()["status"] == "starting"
    assert starting.json()["problems"] == ["1 of 2 replicas running"]
    assert degraded.status_code == 200 and degraded.json()["status"] == "degraded"
    assert degraded.json()["problems"] == ["deployment UNHEALTHY: 1 of 2 replicas running"]
    assert ok.status_code == 200 and ok.json() == {"status": "ok", "device": "cpu", "problems": []}
