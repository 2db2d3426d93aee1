"""Sending the due deliveries of one event, concurrently, each through the gates' admission.

Attempts still running after `in_flight_report_seconds` are shown as InFlight in the status
(one extra write, only for slow endpoints), so `kubectl get` tells a hung endpoint apart from a
queued delivery.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from webhook_operator.config import OperatorConfig
from webhook_operator.domain.apply import Outcome
from webhook_operator.domain.clock import parse_time, utcnow
from webhook_operator.domain.deliveries import Plan
from webhook_operator.domain.keys import EventKey, SubscriptionKey
from webhook_operator.domain.specs import EventSpec, SubscriptionSpec
from webhook_operator.domain.wire import EventEnvelope, build_request, encode_body
from webhook_operator.engine.accounting import Accounting
from webhook_operator.engine.events import meta_field
from webhook_operator.engine.gates import Gates
from webhook_operator.engine.subscriptions import SubscriptionRegistry
from webhook_operator.metrics import Metrics
from webhook_operator.sender import USER_AGENT, Sender

# Shows the named deliveries as InFlight; returns the freshest body.
ReportInFlight = Callable[[Mapping[str, Any], set[str]], Awaitable[Mapping[str, Any]]]


class Attempts:
    def __init__(
        self,
        config: OperatorConfig,
        *,
        sender: Sender,
        subscriptions: SubscriptionRegistry,
        gates: Gates,
        metrics: Metrics,
        accounting: Accounting,
    ) -> None:
        self._config = config
        self._sender = sender
        self._subscriptions = subscriptions
        self._gates = gates
        self._metrics = metrics
        self._accounting = accounting

    async def run(
        self,
        key: EventKey,
        body: Mapping[str, Any],
        spec: EventSpec,
        plan: Plan,
        report_in_flight: ReportInFlight,
    ) -> tuple[dict[str, Outcome], Mapping[str, Any]]:
        """Attempt the plan's due deliveries; returns their outcomes and the freshest body."""
        if not plan.due:
            return {}, body
        attempts_before = {d.subscription: d.attempts for d in plan.deliveries}
        envelope = EventEnvelope(
            uid=meta_field(body, "uid"),
            namespace=key.namespace,
            name=key.name,
            type=spec.type,
            data=spec.data,
            source=spec.source,
            created=parse_time(meta_field(body, "creationTimestamp")) or utcnow(),
        )
        bodies: dict[str, bytes] = {}  # one encoding per format, shared by all subscriptions

        async def one(name: str) -> tuple[str, Outcome] | None:
            record = self._subscriptions.get(SubscriptionKey(key.namespace, name))
            if record is None or not isinstance(record.spec, SubscriptionSpec):
                return None
            state = await self._subscriptions.state(record)
            sub = record.spec
            before = attempts_before[name]
            refusal = await self._gates.admit(key, state, sub)
            if refusal is not None:
                if refusal.deferral is None:
                    return None  # the next plan holds it, with its reason
                self._metrics.deferrals.labels(*record.key, refusal.deferral.reason).inc()
                return name, Outcome(before, utcnow(), deferral=refusal.deferral)
            if sub.format not in bodies:
                bodies[sub.format] = encode_body(envelope, sub.format)
            self._metrics.in_flight.inc()
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
                self._gates.release(key, state, sub)
            self._accounting.attempted(envelope, record.key, before + 1, result)
            return name, Outcome(before, utcnow(), result, jitter=random.random())

        tasks = {asyncio.ensure_future(one(name)): name for name in plan.due}
        _, running = await asyncio.wait(tasks, timeout=self._config.in_flight_report_seconds)
        if running:
            body = await report_in_flight(body, {tasks[t] for t in running})
        results = await asyncio.gather(*tasks)
        return dict(item for item in results if item is not None), body
