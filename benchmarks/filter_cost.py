"""What a payload filter (spec.filter) costs per event: `python -m benchmarks.filter_cost`.

Measures the matching step alone (domain.deliveries.match_targets, no I/O) for one event of a
realistic ~1 KB body against N subscriptions, with and without filters, and prints microseconds
per event. The event's variables are converted to CEL values once per event, then each filter
evaluates against them, so the first filter costs the conversion and each further one about a
microsecond.
"""

from __future__ import annotations

import argparse
import statistics
import time

from webhook_operator.domain.deliveries import Target, match_targets
from webhook_operator.domain.filters import FilterInput, PayloadFilter, compile_filter, evaluate
from webhook_operator.domain.specs import EventSpec, SubscriptionSpec, parse_subscription_spec

DATA = {
    "orderId": 1001,
    "amount": 150.25,
    "currency": "EUR",
    "customer": {"id": "c-42", "tier": "gold", "email": "someone@example.com", "region": "eu"},
    "items": [{"sku": f"SKU-{n}", "qty": n, "price": 9.99 * n} for n in range(1, 11)],
    "notes": "x" * 200,
}
FILTERS = (
    "data.amount > 100",
    "data.customer.tier == 'gold' && data.currency == 'EUR'",
    "data.items.exists(i, i.sku == 'SKU-7')",
)


def targets(count: int, with_filter: bool) -> list[Target]:
    result = []
    for n in range(count):
        raw = {"url": f"https://example.com/{n}", "eventTypes": ["order.*"]}
        if with_filter:
            raw["filter"] = FILTERS[n % len(FILTERS)]
        spec = parse_subscription_spec(raw)
        assert isinstance(spec, SubscriptionSpec), spec
        result.append(Target(f"sub-{n}", spec))
    return result


def per_event_us(event: EventSpec, subs: list[Target], rounds: int) -> float:
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(rounds):
            match_targets(event, subs)
        samples.append((time.perf_counter() - started) / rounds * 1e6)
    return statistics.median(samples)


def timed_us(call: object, rounds: int) -> float:
    assert callable(call)
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(rounds):
            call()
        samples.append((time.perf_counter() - started) / rounds * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    event = EventSpec(type="order.created", data=DATA)
    print(
        f"converting one event's variables to CEL values: {timed_us(lambda: _convert(), args.rounds):.1f} us"
    )
    variables = FilterInput(event.type, event.source, event.data)
    variables.context  # noqa: B018 -- converted once, as match_targets does per event
    for expression in FILTERS:
        compiled = compile_filter(expression)
        assert isinstance(compiled, PayloadFilter)
        cost = timed_us(lambda compiled=compiled: evaluate(compiled, variables), args.rounds)
        print(f"evaluating {expression!r}: {cost:.1f} us")
    header = ("subscriptions", "no filter (us)", "filters (us)", "filter cost per event (us)")
    print("  ".join(header))
    for count in (1, 10, 100):
        plain = per_event_us(event, targets(count, False), args.rounds // count or 1)
        filtered = per_event_us(event, targets(count, True), args.rounds // count or 1)
        row = (f"{count}", f"{plain:.1f}", f"{filtered:.1f}", f"{filtered - plain:.1f}")
        print("  ".join(cell.rjust(len(title)) for cell, title in zip(row, header, strict=True)))


def _convert() -> object:
    return FilterInput("order.created", None, DATA).context


if __name__ == "__main__":
    main()
