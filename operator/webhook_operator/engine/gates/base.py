"""What may hold a delivery back: one small interface, one gate per rule.

A gate answers at two moments of a reconcile:
- `hold`, when the reconcile plans: a `Blocker` keeps the delivery waiting (its status shows the
  reason) until something wakes its event: the subscription changed, a circuit closed, a
  predecessor finished. No timer, no write per waiting delivery.
- `admit`, just before an attempt is sent: what the attempt uses (an in-flight slot, a rate
  token, the circuit's probe) is taken here; a `Refusal` defers the delivery to a time, or
  leaves it to the next plan. `release` gives back what `admit` took once the attempt is over,
  or when a later gate refused it (`sent=False`).

`Gates` asks them in order: the first that holds gives the reason, and a gate's `admit` runs
only once every gate before it admitted. A new delivery rule is one new gate in that list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from webhook_operator.domain.apply import Deferral
from webhook_operator.domain.deliveries import Blocker, Target
from webhook_operator.domain.keys import EventKey, SubscriptionKey
from webhook_operator.domain.specs import SubscriptionSpec
from webhook_operator.engine.subscriptions import SubscriptionState


@dataclass(frozen=True)
class Refusal:
    """Not sent now. With a deferral: try again then; without: the next plan says why it waits."""

    deferral: Deferral | None = None


class Gate:
    """A rule that may hold a delivery back. Every method defaults to "no objection"."""

    def hold(self, event: EventKey, subscription: SubscriptionState) -> Blocker | None:
        return None

    async def admit(
        self, event: EventKey, subscription: SubscriptionState, spec: SubscriptionSpec
    ) -> Refusal | None:
        return None

    def release(
        self, event: EventKey, subscription: SubscriptionState, spec: SubscriptionSpec, *, sent: bool
    ) -> None:
        return None

    def forget_event(self, event: EventKey) -> None:
        """The event is finished or gone: drop what is kept for it."""

    def forget_subscription(self, subscription: SubscriptionKey) -> None:
        """The subscription is gone."""


class Gates:
    def __init__(self, gates: Sequence[Gate]) -> None:
        self._gates = tuple(gates)

    def targets(
        self, event: EventKey, states: Mapping[str, SubscriptionState], open_names: frozenset[str]
    ) -> dict[str, Target]:
        """The subscriptions as this event's plan sees them: held where a gate holds an open delivery.

        Only open deliveries are asked about: a gate may hand something to the delivery it lets
        through (the circuit's probe token), and a gate that keeps track of what it holds must
        not track deliveries that are not waiting.
        """
        targets = {}
        for name, state in states.items():
            spec = state.record.spec if isinstance(state.record.spec, SubscriptionSpec) else None
            blocker = None
            if name in open_names:
                blocker = next(
                    (b for gate in self._gates if (b := gate.hold(event, state)) is not None), None
                )
            targets[name] = Target(name, spec, blocker)
        return targets

    async def admit(
        self, event: EventKey, subscription: SubscriptionState, spec: SubscriptionSpec
    ) -> Refusal | None:
        admitted: list[Gate] = []
        for gate in self._gates:
            refusal = await gate.admit(event, subscription, spec)
            if refusal is not None:
                for earlier in reversed(admitted):
                    earlier.release(event, subscription, spec, sent=False)
                return refusal
            admitted.append(gate)
        return None

    def release(self, event: EventKey, subscription: SubscriptionState, spec: SubscriptionSpec) -> None:
        for gate in reversed(self._gates):
            gate.release(event, subscription, spec, sent=True)

    def forget_event(self, event: EventKey) -> None:
        for gate in self._gates:
            gate.forget_event(event)

    def forget_subscription(self, subscription: SubscriptionKey) -> None:
        for gate in self._gates:
            gate.forget_subscription(subscription)
