"""The gates: the first that holds names the reason; admission stops at the first refusal and
gives back what earlier gates took."""

from __future__ import annotations

import datetime as dt
from typing import Any

from webhook_operator.domain.apply import Deferral
from webhook_operator.domain.deliveries import Blocker
from webhook_operator.domain.keys import EventKey, SubscriptionKey
from webhook_operator.domain.readiness import readiness
from webhook_operator.domain.specs import SubscriptionSpec
from webhook_operator.engine.gates import Gate, Gates, Refusal
from webhook_operator.engine.gates.in_flight import InFlightGate
from webhook_operator.engine.gates.readiness import ReadinessGate
from webhook_operator.engine.limiter import InFlightLimiter
from webhook_operator.engine.subscriptions import SubscriptionState, record_from_body

EVENT = EventKey("shop", "e1")
LATER = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def state(name: str = "crm", **spec: Any) -> SubscriptionState:
    record = record_from_body(
        {
            "metadata": {"namespace": "shop", "name": name, "uid": "u", "generation": 1},
            "spec": {"url": "https://crm.example/hooks", **spec},
        }
    )
    return SubscriptionState(record, readiness(record.spec))


def spec_of(subscription: SubscriptionState) -> SubscriptionSpec:
    assert isinstance(subscription.record.spec, SubscriptionSpec)
    return subscription.record.spec


class Recording(Gate):
    def __init__(self, name: str, log: list[str], *, holds: bool = False, refuses: bool = False) -> None:
        self.name, self.log, self.holds, self.refuses = name, log, holds, refuses

    def hold(self, event: EventKey, subscription: SubscriptionState) -> Blocker | None:
        self.log.append(f"hold {self.name}")
        return Blocker(self.name, "held") if self.holds else None

    async def admit(
        self, event: EventKey, subscription: SubscriptionState, spec: SubscriptionSpec
    ) -> Refusal | None:
        self.log.append(f"admit {self.name}")
        return Refusal(Deferral(self.name, LATER)) if self.refuses else None

    def release(
        self, event: EventKey, subscription: SubscriptionState, spec: SubscriptionSpec, *, sent: bool
    ) -> None:
        self.log.append(f"release {self.name} sent={sent}")


def test_the_first_gate_that_holds_names_the_reason_and_later_ones_are_not_asked() -> None:
    log: list[str] = []
    gates = Gates([Recording("A", log), Recording("B", log, holds=True), Recording("C", log, holds=True)])
    targets = gates.targets(EVENT, {"crm": state()}, frozenset({"crm"}))
    assert targets["crm"].blocker == Blocker("B", "held")
    assert log == ["hold A", "hold B"]


def test_only_open_deliveries_are_asked_about() -> None:
    log: list[str] = []
    gates = Gates([Recording("A", log, holds=True)])
    targets = gates.targets(EVENT, {"crm": state(), "other": state("other")}, frozenset({"crm"}))
    assert targets["other"].blocker is None and targets["crm"].blocker is not None
    assert log == ["hold A"]


def test_a_paused_subscription_holds_its_deliveries_with_reason_paused() -> None:
    targets = Gates([ReadinessGate()]).targets(EVENT, {"crm": state(paused=True)}, frozenset({"crm"}))
    blocker = targets["crm"].blocker
    assert blocker is not None and blocker.reason == "Paused"
    assert targets["crm"].spec is not None


async def test_a_refusal_releases_what_the_gates_before_it_took_in_reverse_order() -> None:
    log: list[str] = []
    gates = Gates([Recording("A", log), Recording("B", log), Recording("C", log, refuses=True)])
    subscription = state()
    refusal = await gates.admit(EVENT, subscription, spec_of(subscription))
    assert refusal == Refusal(Deferral("C", LATER))
    assert log == ["admit A", "admit B", "admit C", "release B sent=False", "release A sent=False"]


async def test_after_a_sent_attempt_every_gate_releases() -> None:
    log: list[str] = []
    gates = Gates([Recording("A", log), Recording("B", log)])
    subscription = state()
    assert await gates.admit(EVENT, subscription, spec_of(subscription)) is None
    gates.release(EVENT, subscription, spec_of(subscription))
    assert log[2:] == ["release B sent=True", "release A sent=True"]


async def test_the_in_flight_gate_defers_by_a_second_once_max_in_flight_requests_are_out() -> None:
    limiter = InFlightLimiter()
    gates = Gates([InFlightGate(limiter, slot_wait=0.01)])
    subscription = state(maxInFlight=1)
    spec = spec_of(subscription)
    assert await gates.admit(EVENT, subscription, spec) is None
    refusal = await gates.admit(EventKey("shop", "e2"), subscription, spec)
    assert refusal is not None and refusal.deferral is not None
    assert refusal.deferral.reason == "MaxInFlight"
    gates.release(EVENT, subscription, spec)
    assert await gates.admit(EventKey("shop", "e2"), subscription, spec) is None
    assert limiter.in_flight == 1
    gates.forget_subscription(SubscriptionKey("shop", "crm"))
