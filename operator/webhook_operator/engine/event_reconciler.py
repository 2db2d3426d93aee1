"""Reconciles one WebhookEvent: plan, gates, attempts, apply, and one status write.

The loop per key, as a controller-runtime reconciler: read the latest body from memory → match
and plan (domain/deliveries.py) with the gates' holds (engine/gates/) → attempt the due
deliveries (engine/attempts.py) → apply the outcomes (domain/apply.py) → one JSON patch to
`/status`, guarded by a test of `metadata.resourceVersion` → schedule the next reconcile at the
earliest `nextAttemptTime`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from webhook_operator.config import OperatorConfig
from webhook_operator.domain.apply import Outcome, apply_outcomes
from webhook_operator.domain.clock import parse_time, utcnow
from webhook_operator.domain.deliveries import (
    Delivery,
    Plan,
    State,
    Target,
    match_targets,
    next_wake,
    plan_attempts,
    redeliver_failed,
)
from webhook_operator.domain.event_status import Summary, problem_summary, render_status, summarize
from webhook_operator.domain.filters import FilterError, FilterVerdict
from webhook_operator.domain.keys import EventKey, SubscriptionKey
from webhook_operator.domain.ordering import CREATION_VERSION_FIELD, creation_version
from webhook_operator.domain.specs import EventSpec, SpecProblem, SubscriptionSpec, parse_event_spec
from webhook_operator.engine.accounting import Accounting
from webhook_operator.engine.attempts import Attempts
from webhook_operator.engine.circuits import Circuits
from webhook_operator.engine.events import EventStore, Finished, meta_field
from webhook_operator.engine.gates import Gates
from webhook_operator.engine.subscriptions import SubscriptionRegistry, SubscriptionState
from webhook_operator.engine.waiting import WaitingIndex
from webhook_operator.engine.workqueue import WorkQueue
from webhook_operator.kube import ConflictError, KubeClient, KubeError, NotFoundError, resource_path
from webhook_operator.logs import log
from webhook_operator.metrics import Metrics

REDELIVER_ANNOTATION = "webhooks.openplatform.dev/redeliver"
_WRITE_ATTEMPTS = 5


class EventReconciler:
    def __init__(
        self,
        config: OperatorConfig,
        *,
        kube: KubeClient,
        events: EventStore,
        subscriptions: SubscriptionRegistry,
        gates: Gates,
        attempts: Attempts,
        waiting: WaitingIndex,
        metrics: Metrics,
        queue: WorkQueue[EventKey],
        circuits: Circuits,
        accounting: Accounting,
    ) -> None:
        self._config = config
        self._kube = kube
        self._events = events
        self._subscriptions = subscriptions
        self._gates = gates
        self._attempts = attempts
        self._waiting = waiting
        self._metrics = metrics
        self._queue = queue
        self._circuits = circuits
        self._accounting = accounting
        # Outcomes of attempts whose status write failed for good: recorded, not repeated, next time.
        self._unwritten: dict[EventKey, dict[str, Outcome]] = {}
        self.accepting = True  # False during shutdown: no new attempts start

    def wake_waiting(self, sub: SubscriptionKey) -> None:
        """A subscription changed: the events whose deliveries wait on it get another look."""
        for key in self._waiting.waiting(sub):
            self._queue.add(key)

    async def reconcile(self, key: EventKey) -> None:
        try:
            await self._reconcile(key)
        except KubeError as error:
            log(logging.WARNING, "event reconcile failed; retrying", event=str(key), error=str(error))
            self._queue.add_after(key, 5.0)
        finally:
            self._circuits.reconciled(key)

    async def _reconcile(self, key: EventKey) -> None:
        finished = self._events.finished(key)
        if finished is not None:
            await self._retain(key, finished)
            return
        body = self._events.body(key)
        if body is None:
            self._forget(key)
            return
        if not self.accepting:
            return
        spec = parse_event_spec(body.get("spec"), max_data_bytes=self._config.max_data_bytes)
        outcomes: dict[str, Outcome] = self._unwritten.pop(key, {})
        try:
            if not isinstance(spec, SpecProblem):
                targets, deliveries, redelivered = await self._targets_and_deliveries(
                    key, body, spec, planning=True
                )
                if isinstance(deliveries, tuple):
                    plan = plan_attempts(deliveries, targets, utcnow())
                    if outcomes:  # made already, only their write failed: record them, do not resend
                        plan = replace(plan, due=tuple(n for n in plan.due if n not in outcomes))

                    async def report(body: Mapping[str, Any], names: set[str]) -> Mapping[str, Any]:
                        return await self._report_in_flight(key, body, spec, plan, names, redelivered)

                    made, body = await self._attempts.run(key, body, spec, plan, report)
                    outcomes.update(made)
            await self._write(key, body, spec, outcomes)
        except Exception:
            self._keep_unwritten(key, outcomes)
            raise

    async def _targets_and_deliveries(
        self, key: EventKey, body: Mapping[str, Any], spec: EventSpec, *, planning: bool = False
    ) -> tuple[dict[str, Target], tuple[Delivery, ...] | SpecProblem, str | None]:
        """The subscriptions involved, the deliveries (matched on first sight, replayed on request).

        `planning`: matching for the attempts, against the index as it is; otherwise for the record,
        against the index caught up with the event (see `_states`).
        """
        status = body.get("status") if isinstance(body.get("status"), Mapping) else {}
        assert isinstance(status, Mapping)
        redelivered = status.get("redelivered")
        deliveries = _deliveries(body)
        states = await self._states(key, body, deliveries, caught_up=not planning)
        if deliveries is None:
            # A new event is matched when planned and again when written: its filters count once.
            counter = self._counter_of_filters(key.namespace) if planning else None
            deliveries = match_targets(
                spec, (_unheld(name, state) for name, state in states.items()), counter
            )
            if len(deliveries) > self._config.max_deliveries_per_event:
                problem = SpecProblem(
                    "TooManySubscriptions",
                    f"{len(deliveries)} subscriptions in {key.namespace} match; the limit per event is "
                    f"{self._config.max_deliveries_per_event}",
                )
                return {}, problem, redelivered
        requested = (meta_field(body, "annotations") or {}).get(REDELIVER_ANNOTATION)
        if requested is not None and requested != redelivered:
            deliveries = redeliver_failed(deliveries)
            redelivered = requested
            states = await self._states(key, body, deliveries, caught_up=not planning)
        open_names = frozenset(d.subscription for d in deliveries if d.is_open)
        return self._gates.targets(key, states, open_names), deliveries, redelivered

    def _counter_of_filters(self, namespace: str) -> Callable[[str, FilterVerdict], None]:
        def count(subscription: str, verdict: FilterVerdict) -> None:
            result = "error" if isinstance(verdict, FilterError) else "matched" if verdict else "skipped"
            self._metrics.filter_evaluations.labels(namespace, subscription, result).inc()

        return count

    async def _states(
        self,
        key: EventKey,
        body: Mapping[str, Any],
        deliveries: tuple[Delivery, ...] | None,
        *,
        caught_up: bool,
    ) -> dict[str, SubscriptionState]:
        namespace = key.namespace
        # Recording a new event's matches needs the index as new as the event; anything at all
        # needs it complete once per namespace (after a restart, events may be listed before kopf
        # indexed). Planning the first attempts does not wait: on a real API server the check (a
        # LIST not older than the event) waits for the watch cache's progress notification, up to
        # 100 ms. A subscription the watch had not brought yet is matched when the status is
        # written, and its delivery goes out one reconcile later.
        if not self._subscriptions.synced(namespace) or (deliveries is None and caught_up):
            await self._subscriptions.caught_up(namespace, meta_field(body, "resourceVersion"))
        if deliveries is None:
            records = self._subscriptions.in_namespace(namespace)
        else:
            names = [d.subscription for d in deliveries if d.is_open]
            records = [
                r for name in names if (r := self._subscriptions.get(SubscriptionKey(namespace, name)))
            ]
        return {record.name: await self._subscriptions.state(record) for record in records}

    async def _report_in_flight(
        self,
        key: EventKey,
        body: Mapping[str, Any],
        spec: EventSpec,
        plan: Plan,
        names: set[str],
        redelivered: str | None,
    ) -> Mapping[str, Any]:
        """Best effort: on a conflict the final write will carry the truth anyway."""
        if _deliveries(body) is None:
            # The plan matched the index as it was; once recorded, the deliveries are not matched
            # again. Record them only if the index caught up with the event matches no more.
            _, matched, _ = await self._targets_and_deliveries(key, body, spec)
            planned = {d.subscription for d in plan.deliveries}
            if isinstance(matched, SpecProblem) or any(d.subscription not in planned for d in matched):
                return body
        shown = tuple(
            replace(d, state=State.IN_FLIGHT, reason=None) if d.subscription in names else d
            for d in plan.deliveries
        )
        status = render_status(
            _status(body),
            shown,
            summarize(shown),
            now=utcnow(),
            generation=int(meta_field(body, "generation") or 1),
            redelivered=redelivered,
        )
        _keep_creation_version(status, body, spec)
        try:
            return await self._patch_status(key, body, status)
        except KubeError:
            return body

    async def _patch_status(
        self, key: EventKey, body: Mapping[str, Any], status: dict[str, Any]
    ) -> dict[str, Any]:
        """Replace the status whole, only if nobody changed the object since `body` was read."""
        fresh = await self._kube.json_patch(
            resource_path("webhookevents", *key, subresource="status"),
            [
                {
                    "op": "test",
                    "path": "/metadata/resourceVersion",
                    "value": meta_field(body, "resourceVersion"),
                },
                {"op": "add", "path": "/status", "value": status},
            ],
        )
        self._metrics.api_writes.labels("event-status").inc()
        self._events.replace(key, fresh)
        return fresh

    async def _write(
        self,
        key: EventKey,
        body: Mapping[str, Any],
        spec: EventSpec | SpecProblem,
        outcomes: Mapping[str, Outcome],
    ) -> None:
        before: tuple[Delivery, ...] = ()
        for _ in range(_WRITE_ATTEMPTS):
            now = utcnow()
            deliveries, summary, redelivered, targets = await self._next_state(key, body, spec, outcomes, now)
            old_status = _status(body)
            before = _deliveries(body) or ()
            status = render_status(
                old_status,
                deliveries,
                summary,
                now=now,
                generation=int(meta_field(body, "generation") or 1),
                redelivered=redelivered,
            )
            _keep_creation_version(status, body, spec)
            if status == old_status:
                break
            try:
                body = await self._patch_status(key, body, status)
                break
            except ConflictError:
                fresh = await self._kube.get(resource_path("webhookevents", *key))
                if fresh is None:
                    self._forget(key)
                    return
                body = fresh
                self._events.replace(key, body)
            except NotFoundError:
                self._forget(key)
                return
        else:
            self._keep_unwritten(key, outcomes)
            self._queue.add_after(key, 1.0)
            return
        self._accounting.recorded(key, body, before, deliveries or (), outcomes)
        self._schedule(key, body, spec, summary, deliveries or (), targets)

    async def _next_state(
        self,
        key: EventKey,
        body: Mapping[str, Any],
        spec: EventSpec | SpecProblem,
        outcomes: Mapping[str, Outcome],
        now: dt.datetime,
    ) -> tuple[tuple[Delivery, ...] | None, Summary, str | None, dict[str, Target]]:
        if isinstance(spec, SpecProblem):
            return None, problem_summary(spec), _status(body).get("redelivered"), {}
        targets, deliveries, redelivered = await self._targets_and_deliveries(key, body, spec)
        if isinstance(deliveries, SpecProblem):
            return None, problem_summary(deliveries), redelivered, targets
        # On first sight the write matches anew; an attempt to a subscription deleted since stays on record.
        known = {d.subscription for d in deliveries}
        made = [
            Delivery(name) for name, o in outcomes.items() if name not in known and o.attempts_before == 0
        ]
        if any(outcomes[d.subscription].attempted for d in made):
            deliveries = tuple(sorted((*deliveries, *made), key=lambda d: d.subscription))
        plan = plan_attempts(deliveries, targets, now)
        final = apply_outcomes(deliveries, plan.deliveries, targets, outcomes)
        return final, summarize(final), redelivered, targets

    def _schedule(
        self,
        key: EventKey,
        body: Mapping[str, Any],
        spec: EventSpec | SpecProblem,
        summary: Summary,
        deliveries: tuple[Delivery, ...],
        targets: Mapping[str, Target],
    ) -> None:
        # Every open delivery hears of its subscription's changes: a blocker set or lifted, or the
        # subscription deleted (its deliveries end then, not at their next attempt time).
        open_subs = {SubscriptionKey(key.namespace, d.subscription) for d in deliveries if d.is_open}
        self._waiting.set(key, open_subs, summary.pending)
        if any(self._subscriptions.get(sub) is None for sub in open_subs):
            # Deleted while this reconcile was writing: its wake-up came before we were waiting.
            self._queue.add(key)
            return
        if summary.finished:
            ttl = spec.ttl_seconds_after_finished if isinstance(spec, EventSpec) else None
            ttl = ttl if ttl is not None else self._config.default_ttl_seconds
            completed = parse_time(_status(body).get("completionTime")) or utcnow()
            delete_at = completed + dt.timedelta(seconds=ttl) if ttl is not None else None
            self._events.finish(
                key, Finished(meta_field(body, "uid"), meta_field(body, "resourceVersion"), delete_at)
            )
            self._gates.forget_event(key)
            self._queue.forget(key)  # a retry or give-up time still scheduled is moot now
            if delete_at is not None:
                self._queue.add_after(key, (delete_at - utcnow()).total_seconds())
            return
        wake = next_wake(deliveries, targets, utcnow())
        if wake is not None:
            self._queue.add_after(key, (wake - utcnow()).total_seconds())

    async def _retain(self, key: EventKey, finished: Finished) -> None:
        if finished.delete_at is None:
            return
        remaining = (finished.delete_at - utcnow()).total_seconds()
        if remaining > 0:
            self._queue.add_after(key, remaining)
            return
        await self._kube.delete(resource_path("webhookevents", *key), uid=finished.uid)
        self._metrics.api_writes.labels("event-delete").inc()
        log(logging.INFO, "deleted finished event after its TTL", event=str(key))

    def _keep_unwritten(self, key: EventKey, outcomes: Mapping[str, Outcome]) -> None:
        """The status write failed for good: keep what was attempted, to record it next time."""
        made = {name: outcome for name, outcome in outcomes.items() if outcome.attempted}
        if made:
            self._unwritten[key] = made

    def _forget(self, key: EventKey) -> None:
        self._events.forget(key)
        self._queue.forget(key)
        self._unwritten.pop(key, None)
        self._waiting.forget(key)
        self._gates.forget_event(key)


def _unheld(name: str, state: SubscriptionState) -> Target:
    """A subscription as matching sees it: only its spec counts (holds apply once matched)."""
    spec = state.record.spec
    return Target(name, spec if isinstance(spec, SubscriptionSpec) else None)


def _keep_creation_version(
    status: dict[str, Any], body: Mapping[str, Any], spec: EventSpec | SpecProblem
) -> None:
    """An ordered event's creation version goes into its status with the first write, before the
    object's own resourceVersion moves on (domain/ordering.py: it orders same-second events)."""
    if isinstance(spec, EventSpec) and spec.ordering_key is not None:
        status[CREATION_VERSION_FIELD] = creation_version(body)


def _status(body: Mapping[str, Any]) -> Mapping[str, Any]:
    status = body.get("status")
    return status if isinstance(status, Mapping) else {}


def _deliveries(body: Mapping[str, Any]) -> tuple[Delivery, ...] | None:
    raw = _status(body).get("deliveries")
    if not isinstance(raw, list):
        return None
    parsed = (Delivery.from_status(item) for item in raw)
    return tuple(d for d in parsed if d is not None)
