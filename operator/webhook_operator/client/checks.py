"""What a publisher checks before any API call, and the object it then creates.

Pure functions: no I/O. The operator's own event checks (`domain.specs.parse_event_spec`: type
length, data size, valid Unicode, subscription count, TTL range) run here too, so an event the
client accepts is one the operator will deliver, and a bad one is refused before it exists.
The client adds the rules that make an event deliverable at all: a type in the alphabet that
subscription patterns can select, and subscription names that Kubernetes could give an object.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook_operator.client.errors import InvalidEventError
from webhook_operator.domain.specs import DEFAULT_MAX_DATA_BYTES, SpecProblem, parse_event_spec

GROUP = "webhooks.openplatform.dev"
API_VERSION = f"{GROUP}/v1alpha1"
KEY_ANNOTATION = f"{GROUP}/idempotency-key"
MAX_KEY_LENGTH = 256
MAX_SOURCE_LENGTH = 2048
MAX_DATA_BYTES = DEFAULT_MAX_DATA_BYTES
# The alphabet subscription patterns are written in (domain/matching.py), without the wildcard:
# a type outside it could only ever match "*".
_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/\-]*")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NOT_NAME = re.compile(r"[^a-z0-9]+")
_READABLE_PREFIX = 40  # of a derived name; the hash after it keeps names unique
_HASH_HEX = 16  # 64 bits of SHA-256: collisions need ~4e9 keys in one namespace


@dataclass(frozen=True)
class EventRequest:
    """A checked event: the spec to create and the object name it gets."""

    name: str
    spec: Mapping[str, Any]
    key: str | None

    def manifest(self, namespace: str) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": namespace}
        if self.key is not None:
            metadata["annotations"] = {KEY_ANNOTATION: self.key}
        return {"apiVersion": API_VERSION, "kind": "WebhookEvent", "metadata": metadata, "spec": self.spec}


def name_for_key(key: str) -> str:
    """The object name for an idempotency key: a readable prefix and a hash of the whole key.

    Deterministic and the same in every language (`<slug>-<first 16 hex of SHA-256(key)>`, the
    slug being the key lowercased, runs of other characters than a-z and 0-9 turned into one
    `-`, cut to 40 characters): a DNS-1123 name of at most 57 characters.
    """
    digest = hashlib.sha256(key.encode()).hexdigest()[:_HASH_HEX]
    return f"{_slug(key) or 'event'}-{digest}"


def random_name(event_type: str) -> str:
    """A fresh name chosen before the first request, so a retried create cannot make a second event."""
    return f"{_slug(event_type) or 'event'}-{secrets.token_hex(5)}"


def check_event(
    event_type: object,
    data: object,
    *,
    key: str | None = None,
    source: str | None = None,
    subscriptions: Sequence[str] | None = None,
    ttl_seconds: int | None = None,
) -> EventRequest:
    """The event to create, or InvalidEventError naming the first problem."""
    if not isinstance(event_type, str) or not _TYPE.fullmatch(event_type):
        raise InvalidEventError(
            f"type {str(event_type)[:64]!r} is not a valid event type: use letters, digits and "
            "'.', '_', ':', '/', '-', starting with a letter or digit (for example order.created)"
        )
    spec: dict[str, Any] = {"type": event_type, "data": _plain_json(data)}
    if source is not None:
        if not isinstance(source, str) or not source or len(source) > MAX_SOURCE_LENGTH:
            raise InvalidEventError(f"source must be a URI reference of 1 to {MAX_SOURCE_LENGTH} characters")
        spec["source"] = source
    if subscriptions:
        if isinstance(subscriptions, str):
            raise InvalidEventError("subscriptions must be a list of names, not one string")
        for name in subscriptions:
            if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
                raise InvalidEventError(
                    f"subscription name {str(name)[:64]!r} is not a valid Kubernetes object name "
                    "(lowercase letters, digits, '-' and '.')"
                )
        spec["subscriptions"] = list(subscriptions)
    if ttl_seconds is not None:
        if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds < 0:
            raise InvalidEventError("ttl_seconds must be a whole number of seconds, 0 or more")
        spec["ttlSecondsAfterFinished"] = ttl_seconds
    parsed = parse_event_spec(spec, max_data_bytes=MAX_DATA_BYTES)
    if isinstance(parsed, SpecProblem):
        raise InvalidEventError(parsed.message.removeprefix("spec."))
    if key is not None:
        _check_key(key)
        return EventRequest(name_for_key(key), spec, key)
    return EventRequest(random_name(event_type), spec, None)


def parse_data(text: str) -> dict[str, Any]:
    """`--data` text as a JSON object, or InvalidEventError saying why not."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ValueError as error:
        raise InvalidEventError(f"data is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise InvalidEventError(f"data must be a JSON object ({{...}}), not {_json_kind(value)}")
    return value


def same_event(existing: Mapping[str, Any], request: EventRequest) -> bool:
    """Whether an object found under the request's name is the event this request describes."""
    annotations = (existing.get("metadata") or {}).get("annotations") or {}
    if request.key is not None and annotations.get(KEY_ANNOTATION) != request.key:
        return False
    spec = existing.get("spec") or {}
    return {k: v for k, v in spec.items() if v not in (None, [])} == {
        k: v for k, v in request.spec.items() if v not in (None, [])
    }


def differences(existing: Mapping[str, Any], request: EventRequest) -> list[str]:
    """Which spec fields differ (names only: never the data itself, which may be sensitive)."""
    spec = existing.get("spec") or {}
    return sorted(k for k in {*spec, *request.spec} if spec.get(k) != request.spec.get(k))


def _plain_json(data: object) -> dict[str, Any]:
    """`data` as the plain JSON object the API server will store, checked for what it can't hold."""
    if not isinstance(data, Mapping):
        raise InvalidEventError(f"data must be a JSON object (a mapping), not {_json_kind(data)}")
    try:
        text = json.dumps(data, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise InvalidEventError(f"data is not JSON: {error}") from None
    size = len(text.encode(errors="surrogatepass"))
    if size > MAX_DATA_BYTES:  # before parsing it back: a huge payload fails fast
        raise InvalidEventError(f"data is {size} bytes serialized; the limit is {MAX_DATA_BYTES} bytes")
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def _check_key(key: object) -> None:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidEventError(f"key must be a string of 1 to {MAX_KEY_LENGTH} characters")
    if not key.isprintable():
        raise InvalidEventError("key must not contain control characters or line breaks")


def _slug(text: str) -> str:
    return _NOT_NAME.sub("-", text.lower()).strip("-")[:_READABLE_PREFIX].strip("-")


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _json_kind(value: object) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)
