"""metav1.Condition bookkeeping, per the Kubernetes API conventions.

`lastTransitionTime` moves only when `status` changes; reason, message and observedGeneration
follow the latest facts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from webhook_operator.domain.clock import format_time

Status = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Condition:
    type: str
    status: Status
    reason: str
    message: str

    @property
    def is_true(self) -> bool:
        return self.status == "True"


def upsert_condition(
    conditions: Sequence[Mapping[str, Any]],
    condition: Condition,
    *,
    now: dt.datetime,
    generation: int,
) -> list[dict[str, Any]]:
    """A new list with `condition` in place of the one of its type (appended if absent)."""
    result: list[dict[str, Any]] = []
    found = False
    for existing in conditions:
        if existing.get("type") != condition.type:
            result.append(dict(existing))
            continue
        found = True
        transition = existing.get("lastTransitionTime")
        if existing.get("status") != condition.status or not transition:
            transition = format_time(now)
        result.append(_render(condition, transition, generation))
    if not found:
        result.append(_render(condition, format_time(now), generation))
    return result


def find_condition(conditions: object, type_: str) -> Mapping[str, Any] | None:
    if not isinstance(conditions, list):
        return None
    for existing in conditions:
        if isinstance(existing, Mapping) and existing.get("type") == type_:
            return existing
    return None


def _render(condition: Condition, transition: str, generation: int) -> dict[str, Any]:
    return {
        "type": condition.type,
        "status": condition.status,
        "reason": condition.reason,
        "message": condition.message,
        "lastTransitionTime": transition,
        "observedGeneration": generation,
    }
