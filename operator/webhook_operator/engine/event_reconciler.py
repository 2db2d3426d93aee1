"""Reconciles one WebhookEvent: plan, attempt what is due, record everything in one status write.

The loop per key: read the latest body from memory → plan (pure) → attempt the due deliveries
concurrently → apply the results (pure) → one JSON patch to `/status`, guarded by a test of
`metadata.resourceVersion` → schedule the next reconcile at the earliest `nextAttemptTime`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from typing import Any

from webhook_operator.config import OperatorConfig
from webhook_operator.domain.backoff import RetryPolicy
from webhook_operator.domain.clock import parse_time, utcnow
from webhook_operator.domain.deliveries import (
    Delivery,
    Plan,
    State,
    Target,
    apply_result,
    defer,
    match_targets,
    next_wake,
    plan_attempts,
    redeliver_failed,
)
from webhook_operator.domain.event_status import Summary, problem_summary, render_status, summarize
from webhook_operator.domain.filters import FilterError, FilterVerdict
from webhook_operator.domain.specs import EventSpec, SpecProblem, SubscriptionSpec, parse_event_spec
from webhook_operator.domain.wire import EventEnvelope, build_request, encode_body
from webhook_operator.engine.accounting import Accounting, Outcome
from webhook_operator.engine.circuits import Circuits
from webhook_operator.engine.events import EventKey, EventStore, Finished, meta_field
from webhook_operator.engine.health_tracker import SubKey
from webhook_operator.engine.limiter import InFlightLimiter
from webhook_operator.engine.subscriptions import SubscriptionRegistry, SubscriptionState
from webhook_operator.engine.workqueue import WorkQueue
from webhook_operator.kube import ConflictError, KubeClient, KubeError, NotFoundError, resource_path
from webhook_operator.logs import log
from webhook_operator.metrics import Metrics
from webhook_operator.sender import USER_AGENT, Sender

REDELIVER_ANNOTATION = "webhooks.openplatform.dev/redeliver"
_WRITE_ATTEMPTS = 5
_DEFER_SECONDS = 1.0


class EventReconciler:
    def __init__(
        self,
        config: OperatorConfig,
        *,
        kube: KubeClient,
        sender: Sender,
        events: EventStore,
        subscriptions: SubscriptionRegistry,
        limiter: InFlightLimiter,
        metrics: Metrics,
        queue: WorkQueue[EventKey],
        circuits: Circuits,
        accounting: Accounting,
    ) -> None:
        self._config = config
        self._kube = kube
        self._sender = sender
        self._events = events
        self._subscriptions = subscriptions
        self._limiter = limiter
        self._metrics = metrics
        self._queue = queue
        self._circuits = circuits
        self._accounting = accounting
        self._waiting: dict[SubKey, set[EventKey]] = {}
        self._waiting_on: dict[EventKey, set[SubKey]] = {}
        self._pending: dict[EventKey, int] = {}
        # Outcomes of attempts whose status write failed for good: recorded, not repeated, next time.
        self._unwritten: dict[EventKey, dict[str, Outcome]] = {}
        self.accepting = True  # False during shutdown: no new attempts start

    def waiting(self, sub: SubKey) -> Collection[EventKey]:
        """The events with an open delivery to this subscription."""
        return self._waiting.get(sub, ())

    def wake_waiting(self, sub: SubKey) -> None:
        """A subscription changed: the events whose deliveries wait on it get another look."""
        for key in self._waiting.get(sub, ()):
            self._queue.add(key)

    async def reconcile(self, key: EventKey) -> None:
        try:
            await self._reconcile(key)
        except KubeError as error:
            log(
                logging.WARNING,
                "event reconcile failed; retrying",
                event=f"{key[0]}/{key[1]}",
                error=str(error),
            )
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
                    body, spec, count_filters=True
                )
                if isinstance(deliveries, tuple):
                    plan = plan_attempts(deliveries, targets, utcnow())
                    if outcomes:  # made already, only their write failed: record them, do not resend
                        plan = replace(plan, due=tuple(n for n in plan.due if n not in outcomes))
                    made, body = await self._attempt(key, body, spec, plan, redelivered)
                    outcomes.update(made)
            await self._write(key, body, spec, outcomes)
        except Exception:
            self._keep_unwritten(key, outcomes)
            raise

    async def _targets_and_deliveries(
        self, body: Mapping[str, Any], spec: EventSpec, *, count_filters: bool = False
    ) -> tuple[dict[str, Target], tuple[Delivery, ...] | SpecProblem, str | None]:
        """The subscriptions involved, the deliveries (matched on first sight, replayed on request)."""
        namespace = meta_field(body, "namespace")
        status = body.get("status") if isinstance(body.get("status"), Mapping) else {}
        assert isinstance(status, Mapping)
        redelivered = status.get("redelivered")
        states = await self._states(body, spec)
        targets = self._targets(body, states)
        deliveries = _deliveries(body)
        if deliveries is None:
            # A new event is matched when planned and again when written: its filters count once.
            counter = self._counter_of_filters(namespace) if count_filters else None
            deliveries = match_targets(spec, targets.values(), counter)
            if len(deliveries) > self._config.max_deliveries_per_event:
                return (
                    targets,
                    SpecProblem(
                        "TooManySubscriptions",
                        f"{len(deliveries)} subscriptions in {namespace} match; the limit per event is "
                        f"{self._config.max_deliveries_per_event}",
                    ),
                    redelivered,
                )
        requested = (meta_field(body, "annotations") or {}).get(REDELIVER_ANNOTATION)
        if requested is not None and requested != redelivered:
            deliveries = redeliver_failed(deliveries)
            redelivered = requested
            states = await self._states(body, spec, deliveries)
            targets = self._targets(body, states)
        return targets, deliveries, redelivered

    def _counter_of_filters(self, namespace: str) -> Callable[[str, FilterVerdict], None]:
        def count(subscription: str, verdict: FilterVerdict) -> None:
            result = "error" if isinstance(verdict, FilterError) else "matched" if verdict else "skipped"
            self._metrics.filter_evaluations.labels(namespace, subscription, result).inc()

        return count

    def _targets(self, body: Mapping[str, Any], states: Mapping[str, SubscriptionState]) -> dict[str, Target]:
        """The subscriptions as the planner sees them, blocked where an endpoint's circuit is open."""
        key = (meta_field(body, "namespace"), meta_field(body, "name"))
        targets = {name: state.target for name, state in states.items()}
        return self._circuits.gate(key, targets, {name: s.record.generation for name, s in states.items()})

    async def _states(
        self, body: Mapping[str, Any], spec: EventSpec, deliveries: tuple[Delivery, ...] | None = None
    ) -> dict[str, SubscriptionState]:
        namespace = meta_field(body, "namespace")
        deliveries = deliveries if deliveries is not None else _deliveries(body)
        # Matching needs the index as new as the event; replaying recorded deliveries needs it
        # complete once per namespace (after a restart, events may be listed before kopf indexed).
        if deliveries is None or not self._subscriptions.synced(namespace):
            await self._subscriptions.caught_up(namespace, meta_field(body, "resourceVersion"))
        if deliveries is None:
            records = self._subscriptions.in_namespace(namespace)
        else:
            names = [d.subscription for d in deliveries if d.is_open]
            records = [r for name in names if (r := self._subscriptions.get((namespace, name))) is not None]
        return {record.name: await self._subscriptions.state(record) for record in records}

    async def _attempt(
        self, key: EventKey, body: Mapping[str, Any], spec: EventSpec, plan: Plan, redelivered: str | None
    ) -> tuple[dict[str, Outcome], Mapping[str, Any]]:
        """Attempt the due deliveries concurrently; returns their outcomes and the freshest body.

        Attempts still running after `in_flight_report_seconds` are shown as InFlight in the status
        (one extra write, only for slow endpoints), so `kubectl get` tells a hung endpoint apart
        from a queued delivery.
        """
        due, deliveries = plan.due, {d.subscription: d for d in plan.deliveries}
        if not due:
            return {}, body
        namespace = meta_field(body, "namespace")
        envelope = EventEnvelope(
            uid=meta_field(body, "uid"),
            namespace=namespace,
            name=meta_field(body, "name"),
            type=spec.type,
            data=spec.data,
            source=spec.source,
            created=parse_time(meta_field(body, "creationTimestamp")) or utcnow(),
        )
        bodies: dict[str, bytes] = {}  # one encoding per format, shared by all subscriptions

        async def one(name: str) -> tuple[str, Outcome] | None:
            record = self._subscriptions.get((namespace, name))
            if record is None or not isinstance(record.spec, SubscriptionSpec):
                return None
            state = await self._subscriptions.state(record)
            sub = record.spec
            if sub.format not in bodies:
                bodies[sub.format] = encode_body(envelope, sub.format)
            before = deliveries[name].attempts
            if not self._circuits.allows(record.key, key):
                return None  # opened since the plan: the delivery waits, as the next plan says
            if not await self._limiter.acquire(
                record.key, sub.max_in_flight, wait=self._config.slot_wait_seconds
            ):
                return name, Outcome(before, None, utcnow(), 0.0)
            if not self._circuits.allows(record.key, key):
                self._limiter.release(record.key, sub.max_in_flight)
                return None
            self._metrics.in_flight.inc()
            self._circuits.sending(record.key, key)
            try:
                request = build_request(
                    envelope,
                    sub,
                    bodies[sub.format],
                    state.keys,
                    attempt_time=int(time.time()),
                    user_agent=USER_AGENT,
                )
                result = await self._sender.send(request, timeout=sub.timeout, tls=state.tls)
            finally:
                self._metrics.in_flight.dec()
                self._limiter.release(record.key, sub.max_in_flight)
            self._accounting.attempted(envelope, record.key, before + 1, result)
            return name, Outcome(before, result, utcnow(), random.random())

        tasks = {asyncio.ensure_future(one(name)): name for name in due}
        _, running = await asyncio.wait(tasks, timeout=self._config.in_flight_report_seconds)
        if running:
            body = await self._report_in_flight(key, body, plan, {tasks[t] for t in running}, redelivered)
        results = await asyncio.gather(*tasks)
        return dict(item for item in results if item is not None), body

    async def _report_in_flight(
        self, key: EventKey, body: Mapping[str, Any], plan: Plan, names: set[str], redelivered: str | None
    ) -> Mapping[str, Any]:
        """Best effort: on a conflict the final write will carry the truth anyway."""
        shown = tuple(
            replace(d, state=State.IN_FLIGHT, reason=None) if d.subscription in names else d
            for d in plan.deliveries
        )
        old = body.get("status") if isinstance(body.get("status"), Mapping) else {}
        assert isinstance(old, Mapping)
        status = render_status(
            old,
            shown,
            summarize(shown),
            now=utcnow(),
            generation=int(meta_field(body, "generation") or 1),
            redelivered=redelivered,
        )
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
            deliveries, summary, redelivered, targets = await self._next_state(body, spec, outcomes, now)
            old_status = body.get("status") if isinstance(body.get("status"), Mapping) else {}
            assert isinstance(old_status, Mapping)
            before = _deliveries(body) or ()
            status = render_status(
                old_status,
                deliveries,
                summary,
                now=now,
                generation=int(meta_field(body, "generation") or 1),
                redelivered=redelivered,
            )
            if status == old_status:
                break
            try:
                body = await self._kube.json_patch(
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
                self._events.replace(key, body)
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
        body: Mapping[str, Any],
        spec: EventSpec | SpecProblem,
        outcomes: Mapping[str, Outcome],
        now: dt.datetime,
    ) -> tuple[tuple[Delivery, ...] | None, Summary, str | None, dict[str, Target]]:
        if isinstance(spec, SpecProblem):
            status = body.get("status")
            redone = status.get("redelivered") if isinstance(status, Mapping) else None
            return None, problem_summary(spec), redone, {}
        targets, deliveries, redelivered = await self._targets_and_deliveries(body, spec)
        if isinstance(deliveries, SpecProblem):
            return None, problem_summary(deliveries), redelivered, targets
        # On first sight the write matches anew; an attempt to a subscription deleted since stays on record.
        known = {d.subscription for d in deliveries}
        made = [
            Delivery(name) for name, o in outcomes.items() if name not in known and o.attempts_before == 0
        ]
        if any(outcomes[d.subscription].result is not None for d in made):
            deliveries = tuple(sorted((*deliveries, *made), key=lambda d: d.subscription))
        started = {d.subscription: d for d in deliveries}
        plan = plan_attempts(deliveries, targets, now)
        applied = []
        for delivery in plan.deliveries:
            outcome = outcomes.get(delivery.subscription)
            target = targets.get(delivery.subscription)
            start = started[delivery.subscription]
            # Apply only onto the state the attempt started from: never twice, never onto newer state.
            if outcome is None or not start.is_open or start.attempts != outcome.attempts_before:
                applied.append(delivery)
            elif outcome.result is None:
                # No slot was free; a delivery ended or blocked (paused, ...) meanwhile waits on that.
                waits = not delivery.is_open or (target is not None and target.blocker is not None)
                applied.append(
                    delivery
                    if waits
                    else defer(delivery, now=outcome.at, seconds=_DEFER_SECONDS, reason="MaxInFlight")
                )
            elif target is None:
                # Attempted, then its subscription was deleted: the attempt counts and a success stands.
                done = apply_result(
                    start, outcome.result, RetryPolicy(), now=outcome.at, jitter=outcome.jitter
                )
                if done.state is not State.SUCCEEDED:
                    done = replace(
                        delivery,
                        attempts=done.attempts,
                        last_status_code=done.last_status_code,
                        last_attempt_time=done.last_attempt_time,
                    )
                applied.append(done)
            elif target.spec is not None:
                applied.append(
                    apply_result(
                        delivery, outcome.result, target.spec.retry, now=outcome.at, jitter=outcome.jitter
                    )
                )
            else:
                applied.append(delivery)
        final = tuple(applied)
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
        open_subs = {(key[0], d.subscription) for d in deliveries if d.is_open}
        self._set_waiting(key, open_subs)
        self._set_pending(key, summary.pending)
        if any(self._subscriptions.get(sub) is None for sub in open_subs):
            # Deleted while this reconcile was writing: its wake-up came before we were waiting.
            self._queue.add(key)
            return
        if summary.finished:
            ttl = spec.ttl_seconds_after_finished if isinstance(spec, EventSpec) else None
            ttl = ttl if ttl is not None else self._config.default_ttl_seconds
            status = body.get("status") or {}
            completed = parse_time(status.get("completionTime")) or utcnow()
            delete_at = completed + dt.timedelta(seconds=ttl) if ttl is not None else None
            self._events.finish(
                key, Finished(meta_field(body, "uid"), meta_field(body, "resourceVersion"), delete_at)
            )
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
        log(logging.INFO, "deleted finished event after its TTL", event=f"{key[0]}/{key[1]}")

    def _set_waiting(self, key: EventKey, subs: set[SubKey]) -> None:
        for sub in self._waiting_on.pop(key, set()) - subs:
            waiting = self._waiting.get(sub)
            if waiting is not None:
                waiting.discard(key)
                if not waiting:
                    del self._waiting[sub]
        if subs:
            self._waiting_on[key] = subs
            for sub in subs:
                self._waiting.setdefault(sub, set()).add(key)

    def _set_pending(self, key: EventKey, pending: int) -> None:
        delta = pending - self._pending.get(key, 0)
        if pending:
            self._pending[key] = pending
        else:
            self._pending.pop(key, None)
        if delta:
            self._metrics.pending.inc(delta)

    def _keep_unwritten(self, key: EventKey, outcomes: Mapping[str, Outcome]) -> None:
        """The status write failed for good: keep what was attempted, to record it next time."""
        made = {name: outcome for name, outcome in outcomes.items() if outcome.result is not None}
        if made:
            self._unwritten[key] = made

    def _forget(self, key: EventKey) -> None:
        self._events.forget(key)
        self._queue.forget(key)
        self._unwritten.pop(key, None)
        self._set_waiting(key, set())
        self._set_pending(key, 0)


def _deliveries(body: Mapping[str, Any]) -> tuple[Delivery, ...] | None:
    status = body.get("status")
    if not isinstance(status, Mapping) or not isinstance(status.get("deliveries"), list):
        return None
    parsed = (Delivery.from_status(raw) for raw in status["deliveries"])
    return tuple(d for d in parsed if d is not None)
