"""Prometheus metrics. Labels are bounded: namespace and subscription name, never URL or event name."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class Metrics:
    """One registry per operator instance (tests run several in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("namespace", "subscription")
        self.attempts = Counter(
            "webhook_attempts_total",
            "Delivery attempts by outcome (success, retry, fail, gone) and status-code class.",
            (*labels, "outcome", "code_class"),
            registry=self.registry,
        )
        self.deliveries = Counter(
            "webhook_deliveries_total",
            "Deliveries that reached a final state, by result (succeeded, failed).",
            (*labels, "result"),
            registry=self.registry,
        )
        self.attempt_duration = Histogram(
            "webhook_attempt_duration_seconds",
            "Duration of one HTTP attempt, connect to response.",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.end_to_end = Histogram(
            "webhook_delivery_latency_seconds",
            "From the event's creation to its successful delivery, retries included.",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.retries = Counter(
            "webhook_retries_scheduled_total",
            "Retries scheduled after a failed attempt.",
            labels,
            registry=self.registry,
        )
        self.egress_refusals = Counter(
            "webhook_egress_refusals_total",
            "Attempts refused by the egress policy.",
            labels,
            registry=self.registry,
        )
        self.pending = Gauge(
            "webhook_deliveries_pending",
            "Deliveries not yet final (pending or retrying).",
            labels,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "webhook_attempts_in_flight", "HTTP attempts under way.", registry=self.registry
        )
        self.subscriptions = Gauge(
            "webhook_subscriptions",
            "1 per subscription, labelled with its Ready status and reason.",
            (*labels, "ready", "reason"),
            registry=self.registry,
        )
        self.circuits_open = Gauge(
            "webhook_circuit_open",
            "1 while the subscription's circuit is open: its deliveries wait for a probe to succeed.",
            labels,
            registry=self.registry,
        )
        self.deferrals = Counter(
            "webhook_deliveries_deferred_total",
            "Due deliveries not sent at their time, by reason (MaxInFlight, RateLimited): they wait "
            "and are sent later, with no attempt spent.",
            (*labels, "reason"),
            registry=self.registry,
        )
        self.filter_evaluations = Counter(
            "webhook_filter_evaluations_total",
            "Payload filters (spec.filter) evaluated on new events, by result (matched, skipped, error).",
            (*labels, "result"),
            registry=self.registry,
        )
        self.recovered = Counter(
            "webhook_recovered_deliveries_total",
            "Failed deliveries put back to Pending by a subscription's recover-since annotation.",
            labels,
            registry=self.registry,
        )
        self.api_writes = Counter(
            "webhook_operator_api_writes_total",
            "Writes the operator sent to the Kubernetes API, by kind.",
            ("kind",),
            registry=self.registry,
        )
        self.leader = Gauge(
            "webhook_operator_leader",
            "1 while this process delivers (it holds the leader Lease, or runs without election); "
            "0 while it stands by.",
            registry=self.registry,
        )
        self.source_events = Counter(
            "webhook_source_events_total",
            "WebhookEvents a WebhookSource created, by change (added, modified, deleted).",
            ("namespace", "source", "change"),
            registry=self.registry,
        )
        self.source_coalesced = Counter(
            "webhook_source_coalesced_total",
            "Object states a WebhookSource replaced by a newer one before emitting them (rate cap).",
            ("namespace", "source"),
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


def code_class(status_code: int | None) -> str:
    return f"{status_code // 100}xx" if status_code else "error"
