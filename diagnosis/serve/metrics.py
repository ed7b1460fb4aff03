"""The server's Prometheus metrics (``GET /metrics``), in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "Metrics"]

#: The exposition format's content type.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Counters, gauge and histogram of one server (a registry per instance, so several can live in one process)."""

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.received = Counter(
            "diagnosis_alerts_received", "Alert entries received in webhook notifications.", registry=r
        )
        self.rejected = Counter(
            "diagnosis_alerts_rejected", "Alert entries rejected: malformed, or mapped to no symptom.", registry=r
        )
        self.notifications = Counter(
            "diagnosis_notifications", "Webhook notifications by result.", ["result"], registry=r
        )
        self.open = Gauge("diagnosis_incidents_open", "Incidents open now.", registry=r)
        self.latency = Histogram(
            "diagnosis_update_seconds",
            "Time from a request's arrival to the updated diagnosis being committed.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.hooks = Counter("diagnosis_hooks_run", "Hook runs started.", ["kind"], registry=r)
        self.hook_failures = Counter(
            "diagnosis_hooks_failed", "Hook runs whose outcome was not success.", ["kind"], registry=r
        )

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)
