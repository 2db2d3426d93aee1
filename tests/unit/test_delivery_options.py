"""Ordering per key and rate limits: the specs, the pure rules, and the two gates."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from webhook_operator.domain.keys import EventKey, SubscriptionKey
from webhook_operator.domain.ordering import Link, Position, first_holder, position
from webhook_operator.domain.rate import Bucket, RateLimit, give_back, reserve
from webhook_operator.domain.readiness import readiness
from webhook_operator.domain.specs import (
    SpecProblem,
    SubscriptionSpec,
    parse_event_spec,
    parse_subscription_spec,
)
from webhook_operator.engine.gates.ordering import OrderingGate
from webhook_operator.engine.gates.rate import RateGate
from webhook_operator.engine.subscriptions import SubscriptionState, record_from_body

URL = "https://crm.example/hooks"

# --- specs -------------------------------------------------------------------------------------


def test_ordering_and_rate_limit_default_to_off() -> None:
    spec = parse_subscription_spec({"url": URL})
    assert isinstance(spec, SubscriptionSpec)
    assert (spec.ordering, spec.rate_limit) == ("Unordered", None)


def test_ordering_and_rate_limit_are_parsed() -> None:
    spec = parse_subscription_spec(
        {"url": URL, "ordering": "PerKey", "rateLimit": {"requestsPerSecond": 2.5, "burst": 4}}
    )
    assert isinstance(spec, SubscriptionSpec)
    assert (spec.ordering, spec.rate_limit) == ("PerKey", RateLimit(2.5, 4))
    assert parse_subscription_spec({"url": URL, "rateLimit": {"requestsPerSecond": 5}}) == SubscriptionSpec(
        url=URL, rate_limit=RateLimit(5.0, 1)
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"ordering": "Sorted"}, "spec.ordering must be Unordered or PerKey"),
        ({"rateLimit": {"requestsPerSecond": 0}}, "spec.rateLimit.requestsPerSecond must be between"),
        ({"rateLimit": {"burst": 2}}, "spec.rateLimit.requestsPerSecond is required"),
        ({"rateLimit": {"requestsPerSecond": 1, "burst": 0}}, "spec.rateLimit.burst must be between"),
        (
            {"rateLimit": {"requestsPerSecond": 1, "burst": 1.5}},
            "spec.rateLimit.burst must be a whole number",
        ),
        ({"rateLimit": 5}, "spec.rateLimit must be an object"),
    ],
)
def test_bad_delivery_options_are_invalid_specs_that_say_why(spec: dict[str, Any], message: str) -> None:
    problem = parse_subscription_spec({"url": URL, **spec})
    assert isinstance(problem, SpecProblem)
    assert problem.reason == "InvalidSpec" and message in problem.message


def test_an_events_ordering_key_is_parsed_and_checked() -> None:
    event = parse_event_spec({"type": "order.created", "data": {}, "orderingKey": "order-1"})
    assert not isinstance(event, SpecProblem) and event.ordering_key == "order-1"
    long = parse_event_spec({"type": "t", "data": {}, "orderingKey": "k" * 257})
    assert isinstance(long, SpecProblem) and "spec.orderingKey is longer than 256" in long.message


# --- which event came first ----------------------------------------------------------------------


def body(name: str, created: str, version: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "shop",
            "name": name,
            "creationTimestamp": created,
            "resourceVersion": version,
        },
        "spec": {"type": "t", "data": {}, "orderingKey": "order-1"},
        **({"status": status} if status else {}),
    }


def test_the_creation_time_orders_first_then_the_creation_version_as_kep_5504_compares_them() -> None:
    a = position(body("zz", "2026-12-04T12:00:00Z", "999"))
    b = position(body("aa", "2026-12-04T12:00:00Z", "1000"))  # longer: created later
    c = position(body("mm", "2026-12-04T11:59:59Z", "5000"))
    assert c is not None and a is not None and b is not None
    assert sorted([a, b, c]) == [c, a, b]


def test_the_recorded_creation_version_wins_over_the_moved_on_resource_version() -> None:
    written = body("e", "2026-12-04T12:00:00Z", "2000", creationResourceVersion="900")
    assert position(written) == Position(dt.datetime(2026, 12, 4, 12, tzinfo=dt.UTC), 3, "900", "e")


def test_the_first_holder_is_the_earliest_event_with_that_delivery_open_or_not_matched() -> None:
    at = [Position(dt.datetime(2026, 12, 4, 12, tzinfo=dt.UTC), 1, str(i), f"e{i}") for i in range(4)]
    chain = [
        Link("e0", at[0], frozenset({"other"})),
        Link("e1", at[1], frozenset({"crm"})),
        Link("e2", at[2], None),
        Link("e3", at[3], frozenset({"crm"})),
    ]
    assert first_holder(chain, "crm") == chain[1]
    assert first_holder(chain, "erp") == chain[2], "not matched yet: it may match erp"
    assert first_holder(chain, "crm", before=at[1]) is None, "e1 is the head for crm"
    assert first_holder(chain, "crm", before=at[3]) == chain[1]


# --- the token bucket ----------------------------------------------------------------------------


def test_a_bucket_gives_its_burst_at_once_then_one_token_per_interval() -> None:
    bucket = Bucket.full(RateLimit(5.0, 2), now=0.0)
    waits = []
    for _ in range(5):
        bucket, wait = reserve(bucket, 0.0)
        waits.append(round(wait, 6))
    assert waits == [0.0, 0.0, 0.2, 0.4, 0.6]


def test_tokens_refill_with_time_up_to_the_burst_and_a_returned_token_is_reused() -> None:
    bucket = Bucket.full(RateLimit(5.0, 2), now=0.0)
    bucket, _ = reserve(bucket, 0.0)
    bucket, _ = reserve(bucket, 0.0)
    bucket, wait = reserve(bucket, 10.0)  # idle long enough: full again, not 50 tokens
    assert wait == 0.0 and bucket.tokens == pytest.approx(1.0)
    bucket, _ = reserve(bucket, 10.0)
    bucket, wait = reserve(bucket, 10.0)
    assert wait == pytest.approx(0.2)
    bucket = give_back(bucket, 10.0)
    _, wait = reserve(bucket, 10.0)
    assert wait == pytest.approx(0.2), "the returned reservation is the next one's"


# --- the gates -----------------------------------------------------------------------------------


def subscription(name: str = "crm", **spec: Any) -> SubscriptionState:
    record = record_from_body(
        {
            "metadata": {"namespace": "shop", "name": name, "uid": "u", "generation": 1},
            "spec": {"url": URL, **spec},
        }
    )
    return SubscriptionState(record, readiness(record.spec))


def spec_of(state: SubscriptionState) -> SubscriptionSpec:
    assert isinstance(state.record.spec, SubscriptionSpec)
    return state.record.spec


def delivering(name: str, second: int, *, open_to: list[str] | None) -> dict[str, Any]:
    deliveries = None if open_to is None else [{"subscription": s, "state": "Pending"} for s in open_to]
    extra = {"deliveries": deliveries} if deliveries is not None else {}
    return body(name, f"2026-12-04T12:00:{second:02d}Z", str(100 + second), **extra)


def ordered_world() -> tuple[OrderingGate, list[EventKey]]:
    woken: list[EventKey] = []
    gate = OrderingGate(wake=woken.append)
    gate.listed("shop")
    woken.clear()
    return gate, woken


def test_a_per_key_delivery_waits_for_the_earlier_event_of_its_key() -> None:
    gate, _ = ordered_world()
    per_key = subscription(ordering="PerKey")
    gate.observe(EventKey("shop", "first"), delivering("first", 1, open_to=["crm"]))
    gate.observe(EventKey("shop", "second"), delivering("second", 2, open_to=["crm"]))
    assert gate.hold(EventKey("shop", "first"), per_key) is None
    blocker = gate.hold(EventKey("shop", "second"), per_key)
    assert blocker is not None and blocker.reason == "WaitingForPredecessor"
    assert "first" in blocker.message and not blocker.gives_up
    assert gate.hold(EventKey("shop", "second"), subscription()) is None, "an Unordered subscription"


def test_a_final_delivery_of_the_head_wakes_only_the_next_event_waiting_on_that_subscription() -> None:
    gate, woken = ordered_world()
    per_key = subscription(ordering="PerKey")
    for second, name in enumerate(["first", "second", "third"], start=1):
        gate.observe(EventKey("shop", name), delivering(name, second, open_to=["crm"]))
    done = delivering("first", 1, open_to=[])  # its delivery is final (Succeeded or Failed alike)
    gate.observe(EventKey("shop", "first"), done)
    assert woken == [EventKey("shop", "second")]
    assert gate.hold(EventKey("shop", "second"), per_key) is None
    assert gate.hold(EventKey("shop", "third"), per_key) is not None


def test_a_head_that_ends_before_the_next_event_is_matched_wakes_that_event() -> None:
    # The next event was planned (held) while the head was in flight, and its write lands after
    # the head's: nothing would lift the hold it records unless the head's end woke it.
    gate, woken = ordered_world()
    gate.observe(EventKey("shop", "first"), delivering("first", 1, open_to=None))
    gate.observe(EventKey("shop", "second"), delivering("second", 2, open_to=None))
    assert gate.hold(EventKey("shop", "second"), subscription(ordering="PerKey")) is not None
    gate.observe(EventKey("shop", "first"), delivering("first", 1, open_to=[]))  # it failed: final
    assert woken == [EventKey("shop", "second")]
    assert gate.hold(EventKey("shop", "second"), subscription(ordering="PerKey")) is None


def test_other_keys_and_other_subscriptions_are_not_held() -> None:
    gate, _ = ordered_world()
    gate.observe(EventKey("shop", "first"), delivering("first", 1, open_to=["erp"]))
    other_key = delivering("other", 2, open_to=["crm"])
    other_key["spec"]["orderingKey"] = "order-2"
    gate.observe(EventKey("shop", "other"), other_key)
    gate.observe(EventKey("shop", "second"), delivering("second", 3, open_to=["crm"]))
    per_key = subscription(ordering="PerKey")
    assert gate.hold(EventKey("shop", "second"), per_key) is None, "first's open delivery is to erp"
    assert gate.hold(EventKey("shop", "other"), per_key) is None


def test_an_earlier_event_not_matched_yet_holds_until_it_matches_without_that_subscription() -> None:
    gate, woken = ordered_world()
    gate.observe(EventKey("shop", "first"), delivering("first", 1, open_to=None))
    gate.observe(EventKey("shop", "second"), delivering("second", 2, open_to=["crm"]))
    assert gate.hold(EventKey("shop", "second"), subscription(ordering="PerKey")) is not None
    gate.observe(EventKey("shop", "first"), delivering("first", 1, open_to=["erp"]))
    assert woken == [EventKey("shop", "second")]


def test_until_the_events_are_listed_a_per_key_delivery_waits_and_is_woken_after() -> None:
    woken: list[EventKey] = []
    gate = OrderingGate(wake=woken.append)
    gate.observe(EventKey("shop", "only"), delivering("only", 1, open_to=["crm"]))
    blocker = gate.hold(EventKey("shop", "only"), subscription(ordering="PerKey"))
    assert blocker is not None and "list" in blocker.message
    gate.listed("sh*")  # a namespace pattern, as --namespace accepts
    assert woken == [EventKey("shop", "only")]
    assert gate.hold(EventKey("shop", "only"), subscription(ordering="PerKey")) is None


def test_a_deleted_head_releases_its_successor() -> None:
    gate, woken = ordered_world()
    gate.observe(EventKey("shop", "first"), delivering("first", 1, open_to=["crm"]))
    gate.observe(EventKey("shop", "second"), delivering("second", 2, open_to=["crm"]))
    gate.observe(EventKey("shop", "first"), None)
    assert woken == [EventKey("shop", "second")] and gate.tracked == 1


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_rate_gate_defers_past_the_burst_with_reason_rate_limited_and_keeps_the_reservation() -> (
    None
):
    clock = Clock()
    gate = RateGate(clock)
    sub = subscription(rateLimit={"requestsPerSecond": 5, "burst": 1})
    first, second = EventKey("shop", "e1"), EventKey("shop", "e2")
    assert await gate.admit(first, sub, spec_of(sub)) is None
    refusal = await gate.admit(second, sub, spec_of(sub))
    assert refusal is not None and refusal.deferral is not None
    assert refusal.deferral.reason == "RateLimited"
    clock.now += 0.1
    again = await gate.admit(second, sub, spec_of(sub))
    assert again is not None, "woken early: it still waits for its own token"
    assert await gate.admit(EventKey("shop", "e3"), sub, spec_of(sub)) is not None
    clock.now += 0.1
    assert await gate.admit(second, sub, spec_of(sub)) is None, "its reserved token is due"


async def test_a_reservation_given_up_goes_to_the_next_delivery() -> None:
    clock = Clock()
    gate = RateGate(clock)
    sub = subscription(rateLimit={"requestsPerSecond": 1, "burst": 1})
    assert await gate.admit(EventKey("shop", "e1"), sub, spec_of(sub)) is None
    assert await gate.admit(EventKey("shop", "e2"), sub, spec_of(sub)) is not None  # reserves t+1
    gate.forget_event(EventKey("shop", "e2"))  # finished meanwhile
    clock.now += 1.0
    assert await gate.admit(EventKey("shop", "e3"), sub, spec_of(sub)) is None


async def test_reservations_held_past_their_time_lapse_so_a_pause_ends_without_a_burst() -> None:
    clock = Clock()
    gate = RateGate(clock)
    sub = subscription(rateLimit={"requestsPerSecond": 5, "burst": 1})
    events = [EventKey("shop", f"e{i}") for i in range(10)]
    admitted = [await gate.admit(event, sub, spec_of(sub)) is None for event in events]
    assert admitted == [True] + [False] * 9  # nine reservations, 0.2 s apart
    clock.now += 60  # the subscription was paused for a minute; now they all come back
    admitted = [await gate.admit(event, sub, spec_of(sub)) is None for event in events[1:]]
    assert admitted == [True] + [False] * 8, "one token at once, the rest reserve anew"


async def test_without_a_rate_limit_the_rate_gate_admits_everything() -> None:
    gate = RateGate(Clock())
    sub = subscription()
    for i in range(100):
        assert await gate.admit(EventKey("shop", f"e{i}"), sub, spec_of(sub)) is None
    gate.forget_subscription(SubscriptionKey("shop", "crm"))
