"""A subscription's Ready condition, from the facts: its spec, its Secrets, its endpoint's health.

The order says which problem a person should fix first when several hold at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from webhook_operator.domain.api import Annotation, ConditionType, Reason
from webhook_operator.domain.conditions import Condition
from webhook_operator.domain.deliveries import Blocker
from webhook_operator.domain.health import Disabled
from webhook_operator.domain.specs import SpecProblem, SubscriptionSpec

READY = ConditionType.READY


@dataclass(frozen=True)
class Readiness:
    condition: Condition
    blocker: Blocker | None  # set when deliveries must wait


def readiness(
    spec: SubscriptionSpec | SpecProblem,
    *,
    secret_problem: SpecProblem | None = None,
    egress_problem: str | None = None,
    disabled: Disabled | None = None,
) -> Readiness:
    if isinstance(spec, SpecProblem):
        return _waiting(spec.reason, spec.message)
    if secret_problem is not None:
        return _waiting(secret_problem.reason, secret_problem.message)
    if disabled is not None:
        return _waiting(
            Reason.ENDPOINT_DISABLED,
            f"{disabled.message}; deliveries wait. Change the spec or set the "
            f"{Annotation.REENABLE} annotation to a new value to resume",
        )
    if egress_problem is not None:
        # Not a blocker: each delivery fails at once with the same message, nothing waits forever.
        return Readiness(Condition(READY, "False", Reason.EGRESS_DENIED, egress_problem), None)
    if spec.paused:
        return _waiting(Reason.PAUSED, "spec.paused is true; deliveries wait until it is false")
    return Readiness(Condition(READY, "True", Reason.ACTIVE, f"delivering to {_origin(spec.url)}"), None)


def _waiting(reason: str, message: str) -> Readiness:
    return Readiness(Condition(READY, "False", reason, message), Blocker(reason, message))


def _origin(url: str) -> str:
    # The scheme, host and port only: paths and queries can carry tokens.
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0].split('?', 1)[0]}"
