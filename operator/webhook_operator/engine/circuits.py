"""The circuits of all endpoints (domain/circuit.py), the probe token, and the wake-ups.

While a circuit is open its deliveries are blocked like a paused subscription's: each event
writes the reason once and then waits, in memory, on the subscription; no timer or write per
delivery. When the circuit's wait is over, one waiting event is woken and holds the probe
token: only its delivery is sent. Its success closes the circuit and wakes every waiting event;
its failure reopens the circuit with a longer wait. An event woken for the probe that does not
send it (its delivery ended meanwhile, say) passes the token to another waiting event.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections.abc import Callable, Collection

from webhook_operator.domain.api import Reason
from webhook_operator.domain.backoff import RetryPolicy
from webhook_operator.domain.circuit import Circuit, after_attempt
from webhook_operator.domain.clock import utcnow
from webhook_operator.domain.keys import EventKey, SubscriptionKey
from webhook_operator.domain.outcomes import Verdict
from webhook_operator.logs import log
from webhook_operator.metrics import Metrics

FAILING = Reason.ENDPOINT_FAILING


class Circuits:
    def __init__(
        self,
        threshold: int,
        *,
        metrics: Metrics,
        waiting: Callable[[SubscriptionKey], Collection[EventKey]],
        wake: Callable[[EventKey], None],
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        """`waiting(sub)`: the events with an open delivery to it; `wake(key)`: reconcile that one."""
        self._threshold = threshold
        self._metrics = metrics
        self._waiting = waiting
        self._wake = wake
        self._clock = clock
        self._circuits: dict[SubscriptionKey, Circuit] = {}  # only endpoints with a failure streak
        self._token: dict[SubscriptionKey, EventKey] = {}  # the event that may send the probe
        self._probing: set[SubscriptionKey] = set()  # the token's holder sent it; the answer is awaited
        self._passed: dict[SubscriptionKey, set[EventKey]] = {}  # woke for the probe, did not send it
        self._timers: dict[SubscriptionKey, asyncio.TimerHandle] = {}

    @property
    def open_count(self) -> int:
        return sum(1 for circuit in self._circuits.values() if not circuit.is_closed)

    def holding(self, sub: SubscriptionKey, key: EventKey, generation: int) -> Circuit | None:
        """The open circuit that holds this event's delivery back, or None (closed, or this event
        holds the probe token: its delivery is the probe)."""
        circuit = self._circuits.get(sub)
        if circuit is None or circuit.is_closed:
            return None
        if circuit.generation != generation:
            self._close(sub, "the subscription's spec changed")  # a new URL, a new chance
            return None
        holder = self._token.get(sub)
        if holder == key or (holder is None and circuit.probe_due(self._clock())):
            self._token[sub] = key
            return None
        return circuit

    def allows(self, sub: SubscriptionKey, key: EventKey) -> bool:
        """Checked again just before sending: the circuit may have opened since `gate`."""
        circuit = self._circuits.get(sub)
        return circuit is None or circuit.is_closed or self._token.get(sub) == key

    def sending(self, sub: SubscriptionKey, key: EventKey) -> None:
        """An attempt to `sub` is starting for event `key`: if it holds the token, it is the probe."""
        if self._token.get(sub) == key:
            self._probing.add(sub)

    def record(
        self,
        sub: SubscriptionKey,
        key: EventKey,
        verdict: Verdict,
        *,
        policy: RetryPolicy,
        generation: int,
        at: dt.datetime,
    ) -> None:
        before = self._circuits.get(sub, Circuit(generation=generation))
        probe = self._token.get(sub) == key and sub in self._probing
        after = after_attempt(
            before,
            verdict,
            threshold=self._threshold,
            policy=policy,
            now=at,
            jitter=random.random(),
            probe=probe,
        )
        if probe:
            self._token.pop(sub, None)
            self._probing.discard(sub)
        if after.is_closed:
            if not before.is_closed:
                self._close(sub, "a probe succeeded")
            elif after.failures:
                self._circuits[sub] = after
            else:
                self._circuits.pop(sub, None)
            return
        self._circuits[sub] = after
        if after.retry_at != before.retry_at:
            self._passed.pop(sub, None)
            self._arm(sub, after)
            if before.is_closed:
                self._metrics.circuits_open.labels(*sub).set(1)
                log(
                    logging.WARNING,
                    "circuit opened",
                    subscription=f"{sub[0]}/{sub[1]}",
                    failures=after.failures,
                    next_probe=after.retry_at.isoformat() if after.retry_at else None,
                )

    def reconciled(self, key: EventKey) -> None:
        """The event's reconcile ended: a token it held but did not use goes to another event."""
        for sub in [sub for sub, holder in self._token.items() if holder == key]:
            if sub in self._probing:  # sent, but its outcome was not recorded (the write failed)
                self._probing.discard(sub)
            else:
                self._passed.setdefault(sub, set()).add(key)
            del self._token[sub]
            self._hand_token(sub)

    def forget(self, sub: SubscriptionKey) -> None:
        """The subscription is gone."""
        self._close(sub, None)

    def close_all(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _close(self, sub: SubscriptionKey, why: str | None) -> None:
        was_open = not self._circuits.get(sub, Circuit()).is_closed
        self._circuits.pop(sub, None)
        self._token.pop(sub, None)
        self._probing.discard(sub)
        self._passed.pop(sub, None)
        if (timer := self._timers.pop(sub, None)) is not None:
            timer.cancel()
        if was_open:
            self._metrics.circuits_open.labels(*sub).set(0)
            if why is not None:
                log(logging.INFO, "circuit closed", subscription=f"{sub[0]}/{sub[1]}", why=why)
                for key in list(self._waiting(sub)):
                    self._wake(key)

    def _arm(self, sub: SubscriptionKey, circuit: Circuit) -> None:
        if (timer := self._timers.pop(sub, None)) is not None:
            timer.cancel()
        assert circuit.retry_at is not None
        delay = max(0.0, (circuit.retry_at - self._clock()).total_seconds())
        self._timers[sub] = asyncio.get_running_loop().call_later(delay, self._probe_due, sub)

    def _probe_due(self, sub: SubscriptionKey) -> None:
        self._timers.pop(sub, None)
        if sub not in self._token:
            self._hand_token(sub)

    def _hand_token(self, sub: SubscriptionKey) -> None:
        """Wake one waiting event, not yet passed over, to send the probe."""
        passed = self._passed.get(sub, set())
        candidate = next((key for key in self._waiting(sub) if key not in passed), None)
        if candidate is not None:
            self._token[sub] = candidate
            self._wake(candidate)
