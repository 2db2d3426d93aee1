"""The kstatus pair, `Reconciling` and `Stalled`, derived from each kind's own conditions.

kstatus (Flux, `kubectl wait`-style tooling, cli-utils) reads only `observedGeneration` and
these two "abnormal-true" conditions: Reconciling=True is InProgress, Stalled=True is Failed,
neither is Current. They are derived here from the verdict the operator already reached, so
the two views can never disagree; and they are never both True (kstatus would then read the
one that happens to come first in the list).
"""

from __future__ import annotations

from webhook_operator.domain.api import ConditionType, Reason
from webhook_operator.domain.conditions import Condition

RECONCILING = ConditionType.RECONCILING
STALLED = ConditionType.STALLED

# Only a person helps: the spec, a Secret's content, or the endpoint must change.
SUBSCRIPTION_STALLED_REASONS = frozenset(
    {
        Reason.INVALID_SPEC,
        Reason.INVALID_SECRET,
        Reason.TLS_CONFIG_INVALID,
        Reason.EGRESS_DENIED,
        Reason.ENDPOINT_DISABLED,
    }
)
# Waiting for something that may still come without anyone acting on this object (a Secret
# applied later in the same GitOps sync, say).
SUBSCRIPTION_WAITING_REASONS = frozenset({Reason.SECRET_NOT_FOUND})


def subscription_progress(ready: Condition) -> tuple[Condition, Condition]:
    """(Reconciling, Stalled) for a subscription whose Ready condition is `ready`.

    A paused subscription is neither: pausing is a wish, not a fault, and nothing is pending.
    """
    if ready.status != "True" and ready.reason in SUBSCRIPTION_STALLED_REASONS:
        return _not(RECONCILING, ready), Condition(STALLED, "True", ready.reason, ready.message)
    if ready.status != "True" and ready.reason in SUBSCRIPTION_WAITING_REASONS:
        return Condition(RECONCILING, "True", ready.reason, ready.message), _not(STALLED, ready)
    return _not(RECONCILING, ready), _not(STALLED, ready)


def event_progress(delivered: Condition, failure: Condition, *, pending: int) -> tuple[Condition, Condition]:
    """(Reconciling, Stalled) for an event, from its Delivered and Failed conditions.

    While any delivery is still open the event is in progress, even when another one already
    failed: its final verdict is not reached yet. Once nothing is open, a failure is for good.
    """
    if pending > 0:
        return Condition(RECONCILING, "True", delivered.reason, delivered.message), _not(STALLED, delivered)
    if failure.is_true:
        return _not(RECONCILING, failure), Condition(STALLED, "True", Reason.FAILED, failure.message)
    return _not(RECONCILING, delivered), _not(STALLED, delivered)


def _not(type_: str, verdict: Condition) -> Condition:
    # False, with the verdict's own reason and message: a tool that shows only this condition
    # still says why the object is where it is (Active, Paused, AllDelivered, ...).
    return Condition(type_, "False", verdict.reason, verdict.message)
