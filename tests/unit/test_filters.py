"""Payload filters: CEL over type, source and data; compile problems and per-event errors."""

from __future__ import annotations

from typing import Any

import pytest

from webhook_operator.domain.deliveries import Delivery, State, Target, match_targets
from webhook_operator.domain.filters import (
    MAX_FILTER_LENGTH,
    FilterError,
    FilterInput,
    PayloadFilter,
    compile_filter,
    evaluate,
)
from webhook_operator.domain.specs import EventSpec, SpecProblem, SubscriptionSpec, parse_subscription_spec


def compiled(expression: str) -> PayloadFilter:
    result = compile_filter(expression)
    assert isinstance(result, PayloadFilter), result
    return result


def run(
    expression: str, data: dict[str, Any], type_: str = "order.created", source: str | None = None
) -> object:
    return evaluate(compiled(expression), FilterInput(type_, source, data))


@pytest.mark.parametrize(
    ("expression", "data", "expected"),
    [
        ("data.amount > 100", {"amount": 150}, True),
        ("data.amount > 100", {"amount": 100}, False),
        ("data.amount > 100", {"amount": 150.5}, True),  # int against double, per the CEL spec
        ("data.amount > 100.0", {"amount": 101}, True),
        ("has(data.amount) && data.amount > 100", {"other": 1}, False),
        ("type.startsWith('order.') && source == '/shop'", {}, True),
        ("data.items.exists(i, i.sku == 'A')", {"items": [{"sku": "B"}, {"sku": "A"}]}, True),
        ("'vip' in data.tags", {"tags": ["new"]}, False),
        ("data.customer.tier == 'gold'", {"customer": {"tier": "gold"}}, True),
        ("data.note == null", {"note": None}, True),
    ],
)
def test_a_filter_sees_type_source_and_data(expression: str, data: dict[str, Any], expected: bool) -> None:
    assert run(expression, data, source="/shop") is expected


def test_source_is_the_empty_string_when_the_event_has_none() -> None:
    assert run("source == ''", {}, source=None) is True


@pytest.mark.parametrize(
    ("expression", "why"),
    [
        ("data.amount >", "does not compile"),
        ("data.amount > 100 &&", "does not compile"),
        ("amount > 100", "refers to 'amount'; a filter can use only type, source and data"),
        ("event.type == 'x'", "refers to 'event'"),
        ("   ", "spec.filter is empty"),
        ("true || " * 1000 + "true", f"longer than {MAX_FILTER_LENGTH} characters"),
    ],
)
def test_an_expression_that_does_not_compile_is_reported(expression: str, why: str) -> None:
    result = compile_filter(expression)
    assert isinstance(result, str)
    assert why in result


def test_names_bound_by_macros_are_not_unknown_variables() -> None:
    assert isinstance(compile_filter("data.items.all(item, item.qty > 0)"), PayloadFilter)
    assert isinstance(compile_filter("data.xs.map(x, x * 2).exists(y, y > 3)"), PayloadFilter)


@pytest.mark.parametrize(
    ("expression", "data", "why"),
    [
        ("data.amount > 100", {"other": 1}, "no such key"),
        ("data.amount > 'x'", {"amount": 1}, "spec.filter failed on this event"),
        ("data.amount", {"amount": 1}, "gave int 1, not a bool"),
    ],
)
def test_an_evaluation_that_gives_no_bool_is_a_filter_error(
    expression: str, data: dict[str, Any], why: str
) -> None:
    verdict = run(expression, data)
    assert isinstance(verdict, FilterError)
    assert why in verdict.message


def test_a_subscription_with_a_bad_filter_is_an_invalid_spec_naming_the_error() -> None:
    parsed = parse_subscription_spec({"url": "https://e.com/", "filter": "data.amount >"})
    assert isinstance(parsed, SpecProblem)
    assert parsed.reason == "InvalidSpec"
    assert "spec.filter does not compile" in parsed.message and "Syntax error" in parsed.message


def test_the_same_expression_is_compiled_once() -> None:
    first = parse_subscription_spec({"url": "https://e.com/", "filter": "data.n == 7"})
    again = parse_subscription_spec({"url": "https://e.com/", "filter": "data.n == 7", "paused": True})
    assert isinstance(first, SubscriptionSpec) and isinstance(again, SubscriptionSpec)
    assert first.filter is not None and again.filter is not None
    assert first.filter.program is again.filter.program


def target(name: str, expression: str | None = None, types: tuple[str, ...] = ()) -> Target:
    spec = parse_subscription_spec(
        {"url": "https://e.com/", "eventTypes": list(types), **({"filter": expression} if expression else {})}
    )
    assert isinstance(spec, SubscriptionSpec)
    return Target(name, spec)


def test_matching_delivers_where_the_filter_holds_and_fails_where_it_errs() -> None:
    targets = [
        target("big", "data.amount > 100"),
        target("small", "data.amount <= 100"),
        target("everything"),
        target("broken", "data.missing == 1"),
        target("invoices", "data.amount > 0", types=("invoice.*",)),
    ]
    heard: list[tuple[str, object]] = []
    deliveries = match_targets(
        EventSpec(type="order.created", data={"amount": 150}),
        targets,
        lambda name, verdict: heard.append((name, verdict)),
    )
    assert [d.subscription for d in deliveries] == ["big", "broken", "everything"]
    assert deliveries[0] == Delivery("big")
    broken = deliveries[1]
    assert broken.state is State.FAILED and broken.reason == "FilterError"
    assert broken.attempts == 0 and "no such key" in (broken.last_error or "")
    # the type filter comes first: "invoices" never evaluates its filter
    assert [name for name, _ in heard] == ["big", "broken", "small"]
