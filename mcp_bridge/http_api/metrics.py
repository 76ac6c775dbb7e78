"""`GET /metrics` on the HTTP bridge: the pool's own record in Prometheus' text format.

Nothing is asked of the hosts (their queues are on each host's own `/metrics`), so a scrape costs nothing on
a GPU and answers while every host is down. Per host: its state, calls in flight, calls served and failed,
ejections; per class at the bridge's slot gate (docs/sharing.md): shards waiting, the oldest one's wait and
the mean wait of the last shards that had to wait; per tenant: items sent, calls refused because every host
was busy, items waiting for a slot; per client of the config's `clients`: calls, items, calls running,
refusals (out of scope, over quota) and what its quotas leave this minute. It sits behind the bridge's
tokens like every route, open to every known client as `gpu_status` is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_bridge.access.usage import TenantSnapshot
from mcp_bridge.pool.views import PoolView

PATH = "/metrics"
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Family:
    """One metric: its name, type and help line, and its samples (labels, value)."""

    name: str
    kind: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> None:
        self.samples.append((labels, value))

    def lines(self) -> Iterator[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        for labels, value in self.samples:
            inside = ",".join(f'{key}="{_escaped(text)}"' for key, text in labels.items())
            yield f"{self.name}{{{inside}}} {_number(value)}" if inside else f"{self.name} {_number(value)}"


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def pool_families(view: PoolView) -> list[Family]:
    state = Family("gpu_bridge_host_state", "gauge", "1 for the state each host is in now")
    in_flight = Family("gpu_bridge_host_in_flight", "gauge", "Calls running on each host now")
    served = Family("gpu_bridge_host_served_total", "counter", "Calls each host answered")
    failed = Family("gpu_bridge_host_failed_total", "counter", "Calls that failed on each host")
    ejections = Family("gpu_bridge_host_ejections_total", "counter", "Times each host was ejected")
    for host in view.hosts:
        state.add(1, host=host.name, state=host.state)
        in_flight.add(host.in_flight, host=host.name)
        served.add(host.served, host=host.name)
        failed.add(host.failed, host=host.name)
        ejections.add(host.ejections, host=host.name)
    hedges = Family("gpu_bridge_hedges_total", "counter", "Backup requests sent")
    hedges.add(view.hedges)
    panics = Family("gpu_bridge_panics_total", "counter", "Calls sent while no host was usable")
    panics.add(view.panics)
    return [state, in_flight, served, failed, ejections, hedges, panics, *sharing_families(view)]


def sharing_families(view: PoolView) -> list[Family]:
    waiting = Family("gpu_bridge_class_waiting", "gauge", "Shards waiting for a host slot, per class")
    oldest = Family("gpu_bridge_class_oldest_wait_seconds", "gauge", "The longest current wait for a slot, per class")
    mean = Family("gpu_bridge_class_mean_wait_seconds", "gauge", "Mean wait of the last shards that waited, per class")
    items = Family("gpu_bridge_tenant_items_total", "counter", "Items sent to hosts, per tenant (retries included)")
    busy = Family("gpu_bridge_tenant_refused_busy_total", "counter", "Calls refused because every host was busy")
    queued = Family("gpu_bridge_tenant_waiting_items", "gauge", "Items waiting for a host slot, per tenant")
    sharing = view.sharing
    for name, row in (sharing.classes.items() if sharing else ()):
        waiting.add(row.waiting, **{"class": name})
        oldest.add(row.oldest_wait_s, **{"class": name})
        if row.mean_wait_s is not None:
            mean.add(row.mean_wait_s, **{"class": name})
    for tenant, t in (sharing.tenants.items() if sharing else ()):
        items.add(t.items, tenant=tenant)
        busy.add(t.refusals, tenant=tenant)
        queued.add(t.waiting_items, tenant=tenant)
    return [waiting, oldest, mean, items, busy, queued]


def client_families(clients: Sequence[TenantSnapshot]) -> list[Family]:
    requests = Family("gpu_bridge_client_requests_total", "counter", "Calls admitted, per client")
    items = Family("gpu_bridge_client_items_total", "counter", "Items admitted, per client")
    running = Family("gpu_bridge_client_in_flight", "gauge", "Calls running now, per client")
    refused = Family("gpu_bridge_client_refused_total", "counter", "Calls refused, per client and reason")
    requests_left = Family("gpu_bridge_client_requests_left", "gauge", "Calls its requestsPerMinute leaves now")
    items_left = Family("gpu_bridge_client_items_left", "gauge", "Items its itemsPerMinute leaves now")
    for row in clients:
        requests.add(row.requests, client=row.tenant)
        items.add(row.items, client=row.tenant)
        running.add(row.in_flight, client=row.tenant)
        refused.add(row.refused_scope, client=row.tenant, reason="scope")
        refused.add(row.refused_quota, client=row.tenant, reason="quota")
        if row.requests_left is not None:
            requests_left.add(row.requests_left, client=row.tenant)
        if row.items_left is not None:
            items_left.add(row.items_left, client=row.tenant)
    return [requests, items, running, refused, requests_left, items_left]


def render(view: PoolView, clients: Sequence[TenantSnapshot] = ()) -> str:
    families = [*pool_families(view), *(client_families(clients) if clients else [])]
    return "".join(line + "\n" for family in families for line in family.lines())


def metrics_app(pool: Callable[[], PoolView | None], clients: Callable[[], Sequence[TenantSnapshot]]) -> ASGIApp:
    """The `/metrics` ASGI app: `pool` gives the pool's view (None before it started), `clients` the clients'."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") not in ("GET", "HEAD"):
            await _send(send, 405, b"GET /metrics\n", [(b"allow", b"GET, HEAD")])
            return
        view = pool()
        if view is None:
            await _send(send, 503, b"the bridge's pool is not started\n")
            return
        await _send(send, 200, render(view, clients()).encode())

    return app


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", CONTENT_TYPE), (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
