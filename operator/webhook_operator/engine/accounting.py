"""What attempts and recorded deliveries tell the rest of the operator.

An attempt's metrics and log line go out when its HTTP answer is in; endpoint health, the
circuit, delivery metrics and Kubernetes Events only once the status write that records the
outcome has succeeded, so a write that fails (and is retried) never counts anything twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from webhook_operator.domain.api import EventReason
from webhook_operator.domain.apply import Outcome
from webhook_operator.domain.clock import parse_time
from webhook_operator.domain.deliveries import Delivery, State
from webhook_operator.domain.keys import EventKey, SubscriptionKey
from webhook_operator.domain.outcomes import AttemptResult, Verdict
from webhook_operator.domain.specs import SubscriptionSpec
from webhook_operator.domain.wire import EventEnvelope
from webhook_operator.engine.circuits import Circuits
from webhook_operator.engine.events import event_ref, meta_field
from webhook_operator.engine.health_tracker import HealthTracker
from webhook_operator.engine.subscriptions import SubscriptionRegistry
from webhook_operator.logs import log
from webhook_operator.metrics import Metrics, code_class
from webhook_operator.recorder import EventRecorder


class Accounting:
    def __init__(
        self,
        *,
        subscriptions: SubscriptionRegistry,
        health: HealthTracker,
        circuits: Circuits,
        metrics: Metrics,
        recorder: EventRecorder,
        on_health_change: Callable[[SubscriptionKey], None],
    ) -> None:
        self._subscriptions = subscriptions
        self._health = health
        self._circuits = circuits
        self._metrics = metrics
        self._recorder = recorder
        self._on_health_change = on_health_change

    def attempted(
        self, event: EventEnvelope, sub: SubscriptionKey, attempt: int, result: AttemptResult
    ) -> None:
        """An HTTP attempt ended: its metrics and its log line, at once."""
        labels = (sub[0], sub[1])
        self._metrics.attempts.labels(*labels, result.verdict.value, code_class(result.status_code)).inc()
        self._metrics.attempt_duration.labels(*labels).observe(result.duration)
        if result.egress_refused:
            self._metrics.egress_refusals.labels(*labels).inc()
        log(
            logging.INFO if result.verdict is Verdict.SUCCESS else logging.WARNING,
            "delivery attempt",
            event=f"{event.namespace}/{event.name}",
            event_id=event.uid,
            subscription=sub[1],
            attempt=attempt,
            outcome=result.verdict.value,
            status_code=result.status_code,
            duration_ms=round(result.duration * 1000, 1),
            error=result.error,
        )

    def recorded(
        self,
        key: EventKey,
        body: Mapping[str, Any],
        before: tuple[Delivery, ...],
        deliveries: tuple[Delivery, ...],
        outcomes: Mapping[str, Outcome],
    ) -> None:
        """A status write recorded `deliveries` (over `before`): endpoint health, circuits,
        metrics and Kubernetes Events for what it says happened."""
        self._ended_unattempted(body, before, deliveries, outcomes)
        by_name = {d.subscription: d for d in deliveries}
        created = parse_time(meta_field(body, "creationTimestamp"))
        for name, outcome in outcomes.items():
            delivery = by_name.get(name)
            if outcome.result is None or delivery is None or delivery.attempts != outcome.attempts_before + 1:
                continue
            sub = SubscriptionKey(key.namespace, name)
            record = self._subscriptions.get(sub)
            newly_disabled = self._health.record(
                sub,
                outcome.result.verdict,
                now=outcome.at,
                delivery_failed=delivery.state is State.FAILED,
                generation=record.generation if record else 0,
                egress_refusal=outcome.result.error if outcome.result.egress_refused else None,
            )
            self._on_health_change(sub)
            if record is not None and isinstance(record.spec, SubscriptionSpec):
                self._circuits.record(
                    sub,
                    key,
                    outcome.result.verdict,
                    policy=record.spec.retry,
                    generation=record.generation,
                    at=outcome.at,
                )
            if delivery.state is State.SUCCEEDED:
                self._metrics.deliveries.labels(*sub, "succeeded").inc()
                if delivery.attempts > 1:  # first-time successes are the norm, not a story to tell
                    self._recorder.record(
                        event_ref(body),
                        EventReason.DELIVERED,
                        f"delivered to {name} after {delivery.attempts} attempts",
                    )
                if created is not None:
                    self._metrics.end_to_end.labels(*sub).observe(
                        max(0.0, (outcome.at - created).total_seconds())
                    )
            elif delivery.state is State.FAILED:
                self._metrics.deliveries.labels(*sub, "failed").inc()
                self._recorder.record(
                    event_ref(body),
                    EventReason.DELIVERY_FAILED,
                    f"delivery to {name} failed after {delivery.attempts} attempt(s): {delivery.last_error}",
                    warning=True,
                )
            elif delivery.state is State.RETRYING:
                self._metrics.retries.labels(*sub).inc()
            if newly_disabled is not None and record is not None:
                log(
                    logging.WARNING,
                    "endpoint disabled",
                    subscription=f"{sub[0]}/{sub[1]}",
                    reason=newly_disabled.reason,
                )

    def _ended_unattempted(
        self,
        body: Mapping[str, Any],
        before: tuple[Delivery, ...],
        deliveries: tuple[Delivery, ...],
        outcomes: Mapping[str, Outcome],
    ) -> None:
        """Deliveries that failed without an attempt of theirs (subscription deleted, a circuit's
        wait outlasting the retry policy) count and are told like those that failed trying."""
        was_failed = {d.subscription for d in before if d.state is State.FAILED}
        for delivery in deliveries:
            name = delivery.subscription
            made = outcomes.get(name)
            if delivery.state is not State.FAILED or name in was_failed or (made and made.result):
                continue
            self._metrics.deliveries.labels(meta_field(body, "namespace"), name, "failed").inc()
            self._recorder.record(
                event_ref(body),
                EventReason.DELIVERY_FAILED,
                f"delivery to {name} failed ({delivery.reason}): {delivery.last_error}",
                warning=True,
            )
