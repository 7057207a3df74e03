"""Prometheus collectors for the message path, on a registry owned by one app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "scrm_requests", "Webhook requests by channel and HTTP status",
            ["channel", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "scrm_request_seconds", "Webhook request latency", ["channel"],
            buckets=_BUCKETS, registry=self.registry,
        )
        self.dedupe_hits = Counter(
            "scrm_dedupe_hits", "Retries recognised as duplicates", ["channel"],
            registry=self.registry,
        )
        self.rasa_errors = Counter(
            "scrm_rasa_errors", "Rasa calls that failed or timed out", registry=self.registry
        )
        self.late_replies = Counter(
            "scrm_late_replies", "Answers sent through the customer-service API after the budget",
            ["channel"], registry=self.registry,
        )
        self.cs_sends = Counter(
            "scrm_customer_service_sends", "Customer-service API sends by result",
            ["result"], registry=self.registry,
        )
