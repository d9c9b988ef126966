"""Prometheus metrics of one process (own registry, so several apps can live in one test)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tokenwarden.services.detection import DetectionService
from tokenwarden.services.usage import UsageService
from tokenwarden.services.validation import Validator

log = logging.getLogger(__name__)


class AlertCollector(Collector):
    """Alerts per rule, level and status, read from the database at scrape time (the same
    figure on every node)."""

    def __init__(self, detection: DetectionService) -> None:
        self._detection = detection

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "tokenwarden_alerts",
            "Security alerts by rule, level and status",
            labels=["rule", "level", "status"],
        )
        try:
            for rule, level, status, count in self._detection.counts():
                family.add_metric([rule, level, status], count)
        except Exception as exc:  # a scrape must not fail because the database is down
            log.warning("alert counts unavailable for /metrics: %s", exc)
        yield family


class Metrics:
    def __init__(
        self,
        validator: Validator,
        usage: UsageService | None = None,
        detection: DetectionService | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        if detection is not None:
            self.registry.register(AlertCollector(detection))
        if usage is not None:
            recorder = usage.recorder
            Gauge(
                "tokenwarden_usage_pending", "Usage records buffered in this process", registry=self.registry
            ).set_function(lambda: recorder.pending)
            Gauge(
                "tokenwarden_usage_dropped",
                "Usage records dropped by this process (buffer full)",
                registry=self.registry,
            ).set_function(lambda: recorder.dropped)
            Gauge(
                "tokenwarden_usage_flushed_rows", "Usage rows written by this process", registry=self.registry
            ).set_function(lambda: usage.flushed_rows)
        self.requests = Counter(
            "tokenwarden_http_requests_total",
            "HTTP requests by method and status",
            ["method", "status"],
            registry=self.registry,
        )
        Gauge(
            "tokenwarden_cache_tokens", "Token entries in the validation cache", registry=self.registry
        ).set_function(validator.cache_size)
        Gauge(
            "tokenwarden_event_seq", "Last invalidation event applied by this process", registry=self.registry
        ).set_function(lambda: validator.seq)
        Gauge(
            "tokenwarden_seconds_since_sync",
            "Seconds since this process last confirmed its view against the event log",
            registry=self.registry,
        ).set_function(validator.seconds_since_sync)
