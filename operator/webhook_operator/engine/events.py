"""Events in memory: the latest body of every open event, a small tombstone for finished ones.

Finished events keep no body (their data may be large), only what retention needs, so memory
grows with what is in flight, not with what has been delivered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook_operator.domain.api import Kind
from webhook_operator.domain.keys import EventKey
from webhook_operator.recorder import ObjectRef


@dataclass(frozen=True)
class Finished:
    uid: str
    resource_version: str
    delete_at: dt.datetime | None  # None: kept until someone deletes it


# Told of every change: the event's latest body, or None once it is finished or gone.
Listener = Callable[[EventKey, Mapping[str, Any] | None], None]


class EventStore:
    def __init__(self, listeners: Sequence[Listener] = ()) -> None:
        self._open: dict[EventKey, Mapping[str, Any]] = {}
        self._finished: dict[EventKey, Finished] = {}
        self._listeners = tuple(listeners)

    def _tell(self, key: EventKey, body: Mapping[str, Any] | None) -> None:
        for listener in self._listeners:
            listener(key, body)

    @property
    def open_count(self) -> int:
        return len(self._open)

    @property
    def finished_count(self) -> int:
        return len(self._finished)

    def observe(self, event_type: str, body: Mapping[str, Any]) -> EventKey | None:
        """A watch event; returns the key when the event needs a reconcile."""
        metadata = body.get("metadata") or {}
        key = EventKey(str(metadata.get("namespace", "")), str(metadata.get("name", "")))
        if event_type == "DELETED":
            self._open.pop(key, None)
            self._finished.pop(key, None)
            self._tell(key, None)
            return key
        version = str(metadata.get("resourceVersion", ""))
        known = self._open.get(key)
        known_version = (
            str((known.get("metadata") or {}).get("resourceVersion", ""))
            if known is not None
            else self._finished[key].resource_version
            if key in self._finished
            else None
        )
        if known_version is not None and not _newer(version, known_version):
            return None
        self._finished.pop(key, None)
        self._open[key] = body
        self._tell(key, body)
        return key

    def keys(self, namespace: str | None = None) -> list[EventKey]:
        """Every event known (open or finished), in one namespace or in all."""
        known = [*self._open, *self._finished]
        return known if namespace is None else [key for key in known if key[0] == namespace]

    def body(self, key: EventKey) -> Mapping[str, Any] | None:
        return self._open.get(key)

    def finished(self, key: EventKey) -> Finished | None:
        return self._finished.get(key)

    def replace(self, key: EventKey, body: Mapping[str, Any]) -> None:
        """Our own write's response: the freshest body we know."""
        self._finished.pop(key, None)
        self._open[key] = body
        self._tell(key, body)

    def finish(self, key: EventKey, finished: Finished) -> None:
        self._open.pop(key, None)
        self._finished[key] = finished
        self._tell(key, None)

    def forget(self, key: EventKey) -> None:
        self._open.pop(key, None)
        self._finished.pop(key, None)
        self._tell(key, None)


def _newer(candidate: str, known: str) -> bool:
    # resourceVersions are opaque by contract; comparing them as integers is only an
    # optimisation (skip stale echoes). Correctness rests on the resourceVersion test in writes.
    if candidate.isdigit() and known.isdigit():
        return int(candidate) > int(known)
    return candidate != known


def meta_field(body: Mapping[str, Any], field: str) -> Any:
    """A metadata field of an event body: "" when absent (None for annotations)."""
    metadata = body.get("metadata") or {}
    value = metadata.get(field)
    return value if value is not None else ("" if field != "annotations" else None)


def event_ref(body: Mapping[str, Any]) -> ObjectRef:
    return ObjectRef(
        Kind.EVENT, meta_field(body, "namespace"), meta_field(body, "name"), meta_field(body, "uid")
    )
