"""An endpoint that keeps failing gets one probe at a time instead of every due retry
(engine/circuits.py): while its circuit is open, its deliveries wait with reason EndpointFailing,
except the one event that holds the probe token."""

from __future__ import annotations

from webhook_operator.domain.circuit import failing_message
from webhook_operator.domain.deliveries import Blocker
from webhook_operator.domain.keys import EventKey, SubscriptionKey
from webhook_operator.domain.specs import SubscriptionSpec
from webhook_operator.engine.circuits import FAILING, Circuits
from webhook_operator.engine.gates.base import Gate, Refusal
from webhook_operator.engine.subscriptions import SubscriptionState


class CircuitGate(Gate):
    def __init__(self, circuits: Circuits) -> None:
        self._circuits = circuits

    def hold(self, event: EventKey, subscription: SubscriptionState) -> Blocker | None:
        circuit = self._circuits.holding(subscription.record.key, event, subscription.record.generation)
        if circuit is None:
            return None
        return Blocker(FAILING, failing_message(circuit), gives_up=True)

    async def admit(
        self, event: EventKey, subscription: SubscriptionState, spec: SubscriptionSpec
    ) -> Refusal | None:
        # Asked last: the circuit may have opened while an earlier gate waited (for a slot).
        if not self._circuits.allows(subscription.record.key, event):
            return Refusal()  # the next plan holds it with the circuit's reason
        self._circuits.sending(subscription.record.key, event)
        return None

    def forget_subscription(self, subscription: SubscriptionKey) -> None:
        self._circuits.forget(subscription)
