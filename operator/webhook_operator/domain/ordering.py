"""Ordering per key: which event of a key came first, and which one holds a delivery back.

"Earlier" is the order in which the API server created the events: `metadata.creationTimestamp`
first (it lives on the object for good), then, for events created within the same second (the
timestamp has whole seconds), the `resourceVersion` the event had when it was created. Since
Kubernetes 1.35 (KEP-5504, GA) resource versions of one resource type may be compared by
clients: both are decimal integers, and a longer one is larger. The object's resourceVersion
moves on with every write, so the operator records the one of the creation in the status
(`creationResourceVersion`) with its first status write; an event it has not written yet still
has it as its resourceVersion. Should a server answer with versions that are not decimal
integers, they are compared as strings and, last, the names: some fixed order, documented as
such, rather than none.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from webhook_operator.domain.clock import parse_time

WAITING_FOR_PREDECESSOR = "WaitingForPredecessor"
CREATION_VERSION_FIELD = "creationResourceVersion"


@dataclass(frozen=True, order=True)
class Position:
    """An event's place among the events of its key; compares as "created earlier"."""

    created: dt.datetime
    version_length: int  # KEP-5504: of two decimal versions, the longer is the larger
    version: str
    name: str


@dataclass(frozen=True)
class Link:
    """One not-finished event of a key: where it stands and its deliveries that are not final."""

    name: str
    position: Position
    open: frozenset[str] | None  # subscription names; None: not matched yet (it may match any)

    def holds(self, subscription: str) -> bool:
        return self.open is None or subscription in self.open


def creation_version(body: Mapping[str, Any]) -> str:
    """The resourceVersion the event was created with: recorded in the status, or still its own."""
    status = body.get("status")
    recorded = status.get(CREATION_VERSION_FIELD) if isinstance(status, Mapping) else None
    if isinstance(recorded, str) and recorded:
        return recorded
    return str((body.get("metadata") or {}).get("resourceVersion", ""))


def position(body: Mapping[str, Any]) -> Position | None:
    metadata = body.get("metadata") or {}
    created = parse_time(metadata.get("creationTimestamp"))
    if created is None:
        return None
    version = creation_version(body)
    length = len(version) if version.isdigit() else 0
    return Position(created, length, version, str(metadata.get("name", "")))


def first_holder(chain: Iterable[Link], subscription: str, *, before: Position | None = None) -> Link | None:
    """The earliest event of the chain (sorted by position) that holds deliveries to
    `subscription` back: one with such a delivery not final, or not matched yet. With `before`,
    only events created earlier than that position count."""
    for link in chain:
        if before is not None and link.position >= before:
            return None
        if link.holds(subscription):
            return link
    return None
