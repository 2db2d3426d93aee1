"""The circuits of all endpoints: who holds the probe token, what closes a circuit, who is woken."""

from __future__ import annotations

import datetime as dt

from webhook_operator.domain.backoff import RetryPolicy
from webhook_operator.domain.keys import EventKey, SubscriptionKey
from webhook_operator.domain.outcomes import Verdict
from webhook_operator.engine.circuits import Circuits
from webhook_operator.metrics import Metrics

NOW = dt.datetime(2026, 12, 4, 12, 0, 0, tzinfo=dt.UTC)
SUB = SubscriptionKey("shop", "crm")
POLICY = RetryPolicy(initial_delay=2.0, max_delay=10.0)
E1, E2, E3 = (EventKey("shop", f"e{i}") for i in (1, 2, 3))


class World:
    def __init__(self) -> None:
        self.now = NOW
        self.waiting: set[EventKey] = {E1, E2, E3}
        self.woken: list[EventKey] = []
        self.circuits = Circuits(
            3,
            metrics=Metrics(),
            waiting=lambda sub: sorted(self.waiting),
            wake=self.woken.append,
            clock=lambda: self.now,
        )

    def fail(self, key: EventKey, times: int = 1) -> None:
        for _ in range(times):
            self.circuits.record(SUB, key, Verdict.RETRY, policy=POLICY, generation=1, at=self.now)


async def test_a_closed_circuit_holds_nobody() -> None:
    world = World()
    world.fail(E1, times=2)
    assert world.circuits.holding(SUB, E2, 1) is None
    assert world.circuits.allows(SUB, E2)
    assert world.circuits.open_count == 0


async def test_an_open_circuit_holds_every_event_until_its_probe_is_due() -> None:
    world = World()
    world.fail(E1, times=3)
    assert world.circuits.open_count == 1
    circuit = world.circuits.holding(SUB, E2, 1)
    assert circuit is not None and circuit.failures == 3
    assert not world.circuits.allows(SUB, E2)
    world.circuits.close_all()


async def test_once_the_probe_is_due_one_event_takes_the_token_and_the_others_still_wait() -> None:
    world = World()
    world.fail(E1, times=3)
    world.now = NOW + dt.timedelta(seconds=60)
    assert world.circuits.holding(SUB, E2, 1) is None, "E2 holds the token: its delivery is the probe"
    assert world.circuits.allows(SUB, E2)
    assert world.circuits.holding(SUB, E3, 1) is not None
    world.circuits.close_all()


async def test_a_successful_probe_closes_the_circuit_and_wakes_every_waiting_event() -> None:
    world = World()
    world.fail(E1, times=3)
    world.now = NOW + dt.timedelta(seconds=60)
    world.circuits.holding(SUB, E2, 1)
    world.circuits.sending(SUB, E2)
    world.circuits.record(SUB, E2, Verdict.SUCCESS, policy=POLICY, generation=1, at=world.now)
    assert world.circuits.open_count == 0
    assert sorted(world.woken) == [E1, E2, E3]


async def test_an_unused_token_passes_to_another_waiting_event() -> None:
    world = World()
    world.fail(E1, times=3)
    world.now = NOW + dt.timedelta(seconds=60)
    world.circuits.holding(SUB, E1, 1)  # E1 takes the token, then its reconcile ends unsent
    world.circuits.reconciled(E1)
    assert world.woken == [E2]
    assert world.circuits.holding(SUB, E2, 1) is None
    world.circuits.close_all()


async def test_a_new_generation_of_the_subscription_closes_its_circuit() -> None:
    world = World()
    world.fail(E1, times=3)
    assert world.circuits.holding(SUB, E2, 2) is None
    assert world.circuits.open_count == 0
