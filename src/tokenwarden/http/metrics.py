"""Prometheus metrics of one process (own registry, so several apps can live in one test)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from tokenwarden.services.validation import Validator


class Metrics:
    def __init__(self, validator: Validator) -> None:
        self.registry = CollectorRegistry()
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
