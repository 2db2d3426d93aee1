"""Reconciles one WebhookSubscription: its Ready condition and its endpoint-health counters.

Condition changes are written at once; counter changes at most every `health_flush_seconds`, so
a thousand deliveries to one endpoint cost a handful of status writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from webhook_operator.config import OperatorConfig
from webhook_operator.domain.clock import utcnow
from webhook_operator.domain.conditions import find_condition, upsert_condition
from webhook_operator.domain.readiness import READY
from webhook_operator.domain.recovery import pending_request, recovery_status
from webhook_operator.domain.signing import public_keys
from webhook_operator.engine.health_tracker import HealthTracker, SubKey
from webhook_operator.engine.recovery import Recovery
from webhook_operator.engine.subscriptions import SubscriptionRecord, SubscriptionRegistry
from webhook_operator.engine.workqueue import WorkQueue
from webhook_operator.kube import KubeClient, KubeError, NotFoundError, resource_path
from webhook_operator.logs import log
from webhook_operator.metrics import Metrics
from webhook_operator.recorder import EventRecorder, ObjectRef

_EVENT_REASONS = {
    "EndpointDisabled": ("EndpointDisabled", True),
    "SecretNotFound": ("SecretNotFound", True),
    "InvalidSecret": ("InvalidSecret", True),
    "TLSConfigInvalid": ("TLSConfigInvalid", True),
    "InvalidSpec": ("InvalidSpec", True),
    "EgressDenied": ("EgressDenied", True),
    "Paused": ("Paused", False),
}


class SubscriptionReconciler:
    def __init__(
        self,
        config: OperatorConfig,
        *,
        kube: KubeClient,
        subscriptions: SubscriptionRegistry,
        health: HealthTracker,
        metrics: Metrics,
        recorder: EventRecorder,
        queue: WorkQueue[SubKey],
        on_unblocked: Callable[[SubKey], None],
        recovery: Recovery,
    ) -> None:
        self._config = config
        self._kube = kube
        self._subscriptions = subscriptions
        self._health = health
        self._metrics = metrics
        self._recorder = recorder
        self._queue = queue
        self._on_unblocked = on_unblocked
        self._recovery = recovery
        self._reasons: dict[SubKey, tuple[str, str]] = {}  # (ready, reason), for the gauge
        # What we last wrote, on top of which resourceVersion: until the watch brings our own
        # write back, the record still shows the old status, and we must not write it twice.
        self._written: dict[SubKey, tuple[str, dict[str, Any]]] = {}
        self.status_writes = 0

    def health_changed(self, key: SubKey) -> None:
        tracked = self._health.get(key)
        if tracked is None:
            return
        wait = tracked.last_flush + self._config.health_flush_seconds - time.monotonic()
        self._queue.add_after(key, wait)

    async def reconcile(self, key: SubKey) -> None:
        try:
            await self._reconcile(key)
        except KubeError as error:
            log(
                logging.WARNING,
                "subscription reconcile failed; retrying",
                subscription=f"{key[0]}/{key[1]}",
                error=str(error),
            )
            self._queue.add_after(key, 5.0)

    async def _reconcile(self, key: SubKey) -> None:
        record = self._subscriptions.get(key)
        if record is None:
            self._forget(key)
            self._on_unblocked(key)  # waiting deliveries end as SubscriptionDeleted
            return
        tracked = self._health.ensure(key, record.uid, record.status)
        reenabled = self._reenable_if_asked(record)
        state = await self._subscriptions.state(record)
        condition = state.readiness.condition
        now = utcnow()
        conditions = record.status.get("conditions")
        new_conditions = upsert_condition(
            conditions if isinstance(conditions, list) else [],
            condition,
            now=now,
            generation=record.generation,
        )
        status: dict[str, Any] = {
            "observedGeneration": record.generation,
            "conditions": new_conditions,
            **tracked.health.to_status(),
        }
        if reenabled is not None:
            status["reenabled"] = reenabled
        keys = public_keys(state.keys)
        status["signing"] = {"publicKeys": keys} if keys else None
        recovery = await self._recover_if_asked(record)
        if recovery is not None:
            status["recovery"] = recovery
        changed = {k: v for k, v in status.items() if record.status.get(k) != v}
        written = self._written.get(key)
        if written is not None and written[0] == record.resource_version:
            changed = {k: v for k, v in changed.items() if written[1].get(k) != v}
        self._update_gauge(key, condition.status, condition.reason)
        if not changed:
            self._notify(record, condition.status, condition.reason, condition.message)
            return
        condition_changed = find_condition(conditions, READY) != find_condition(new_conditions, READY)
        only_counters = not condition_changed and set(changed) <= set(tracked.health.to_status())
        wait = tracked.last_flush + self._config.health_flush_seconds - time.monotonic()
        if only_counters and wait > 0:
            self._queue.add_after(key, wait)
            return
        try:
            await self._kube.merge_patch(
                resource_path("webhooksubscriptions", *key, subresource="status"), {"status": changed}
            )
        except NotFoundError:
            return
        base = dict(written[1]) if written is not None and written[0] == record.resource_version else {}
        self._written[key] = (record.resource_version, {**base, **changed})
        self.status_writes += 1
        self._metrics.api_writes.labels("subscription-status").inc()
        tracked.last_flush = time.monotonic()
        self._notify(record, condition.status, condition.reason, condition.message)

    def _reenable_if_asked(self, record: SubscriptionRecord) -> str | None:
        """A spec change or a new reenable annotation value brings a disabled endpoint back."""
        tracked = self._health.get(record.key)
        requested = record.reenable_request
        already = record.status.get("reenabled")
        asked_by_annotation = requested is not None and requested != already
        disabled = tracked.health.disabled if tracked else None
        if disabled is not None and (asked_by_annotation or record.generation > disabled.generation):
            self._health.reenable(record.key)
            self._recorder.record(_ref(record), "EndpointReenabled", "deliveries resume")
            log(logging.INFO, "endpoint re-enabled", subscription=f"{record.namespace}/{record.name}")
        elif tracked is not None and tracked.egress_refusal and record.generation > _observed(record.status):
            tracked.egress_refusal = None  # a new spec deserves a fresh verdict
        return requested if asked_by_annotation else None

    async def _recover_if_asked(self, record: SubscriptionRecord) -> dict[str, Any] | None:
        """A new recover-since value: put back the failed deliveries it names (once per value)."""
        request = pending_request(record.recover_since_request, record.status)
        if request is None:
            return None
        written = self._written.get(record.key)
        if written is not None and written[0] == record.resource_version and "recovery" in written[1]:
            return None  # acted on already; the watch has not brought our own write back yet
        recovered = 0
        if request.problem is not None:
            self._recorder.record(_ref(record), "RecoverSinceInvalid", request.problem, warning=True)
        else:
            recovered = await self._recovery.run(record.namespace, record.name, request)
            self._recorder.record(
                _ref(record),
                "DeliveriesRecovered",
                f"{recovered} failed deliveries of events created since {request.value} put back to Pending",
            )
        return recovery_status(request, redelivered=recovered, now=utcnow())

    def _notify(self, record: SubscriptionRecord, status: str, reason: str, message: str) -> None:
        """Kubernetes Events and wake-ups for transitions a person cares about."""
        previous = find_condition(record.status.get("conditions"), READY)
        if previous is not None and previous.get("status") == status and previous.get("reason") == reason:
            return
        if status == "True":
            self._on_unblocked(record.key)
            if previous is not None:
                self._recorder.record(_ref(record), "Ready", message)
        elif reason in _EVENT_REASONS:
            event_reason, warning = _EVENT_REASONS[reason]
            self._recorder.record(_ref(record), event_reason, message, warning=warning)
            self._on_unblocked(record.key)  # no-op for blockers; EgressDenied lets failures land

    def _update_gauge(self, key: SubKey, ready: str, reason: str) -> None:
        previous = self._reasons.get(key)
        if previous == (ready, reason):
            return
        if previous is not None:
            self._metrics.subscriptions.labels(*previous).dec()
        self._reasons[key] = (ready, reason)
        self._metrics.subscriptions.labels(ready, reason).inc()

    def _forget(self, key: SubKey) -> None:
        previous = self._reasons.pop(key, None)
        if previous is not None:
            self._metrics.subscriptions.labels(*previous).dec()
        self._written.pop(key, None)
        self._health.forget(key)
        self._subscriptions.forget(key)


def _observed(status: Mapping[str, Any]) -> int:
    value = status.get("observedGeneration")
    return value if isinstance(value, int) else 0


def _ref(record: SubscriptionRecord) -> ObjectRef:
    return ObjectRef("WebhookSubscription", record.namespace, record.name, record.uid)
