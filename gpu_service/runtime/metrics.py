"""Prometheus metrics, one registry per app (so several apps in one process stay apart)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _LiveGauges(Collector):
    """Values read at scrape time: queue depth (in all and per priority class) and loaded models."""

    def __init__(self, queue_depth: Callable[[], int], models: Callable[[], Iterable[tuple[str, str, float]]],
                 queued_by_class: Callable[[], dict[str, int]] | None = None):
        self._queue_depth = queue_depth
        self._models = models
        self._queued_by_class = queued_by_class

    def collect(self) -> Iterable[Metric]:
        queue = GaugeMetricFamily("gpu_service_queue_depth", "Items accepted and waiting for a batch")
        queue.add_metric([], self._queue_depth())
        yield queue
        if self._queued_by_class is not None:
            by_class = GaugeMetricFamily("gpu_service_queue_depth_by_class",
                                         "Items waiting for a batch, per priority class", labels=["class"])
            for priority, items in self._queued_by_class().items():
                by_class.add_metric([priority], items)
            yield by_class
        loaded = GaugeMetricFamily(
            "gpu_service_model_loaded_bytes", "Loaded models and their parameter memory", labels=["model", "kind"]
        )
        for name, kind, size in self._models():
            loaded.add_metric([name, kind], size)
        yield loaded


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gpu_service_requests", "Requests by endpoint and status", ["endpoint", "status"], registry=self.registry
        )
        self.batch_size = Histogram(
            "gpu_service_batch_size", "Items per batch", ["model"], registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
        )
        self.batch_tokens = Histogram(
            "gpu_service_batch_tokens", "Padded tokens per batch", ["model"], registry=self.registry,
            buckets=(64, 256, 1024, 4096, 16384, 65536),
        )
        self.queue_seconds = Histogram(
            "gpu_service_queue_seconds", "Time from acceptance to the first batch", ["endpoint"], registry=self.registry
        )
        self.queue_seconds_by_class = Histogram(
            "gpu_service_queue_seconds_by_class", "Time from acceptance to the first batch, per priority class",
            ["class"], registry=self.registry,
        )
        self.inference_seconds = Histogram(
            "gpu_service_inference_seconds", "Time in batches per request", ["endpoint"], registry=self.registry
        )

    def watch(self, queue_depth: Callable[[], int], models: Callable[[], Iterable[tuple[str, str, float]]],
              queued_by_class: Callable[[], dict[str, int]] | None = None) -> None:
        self.registry.register(_LiveGauges(queue_depth, models, queued_by_class))

    def observe_batch(self, model: str, items: int, tokens: int, seconds: float) -> None:
        self.batch_size.labels(model).observe(items)
        self.batch_tokens.labels(model).observe(tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)
