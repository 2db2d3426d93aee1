"""Typed keys of the objects the engine tracks: mypy tells an event's key from a subscription's.

NamedTuples, not frozen dataclasses: they hash and compare as fast as the bare tuples they
replace (the work queue hashes a key several times per reconcile) and still unpack as
`namespace, name`. Two keys of different kinds with equal fields compare equal at run time;
the types are what keeps them apart, so never mix them in one collection.
"""

from __future__ import annotations

from typing import NamedTuple


class EventKey(NamedTuple):
    """A WebhookEvent: its namespace and name."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class SubscriptionKey(NamedTuple):
    """A WebhookSubscription: its namespace and name."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class SecretKey(NamedTuple):
    """A Secret a subscription refers to: its namespace and name."""

    namespace: str
    name: str
