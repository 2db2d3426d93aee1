"""The HTTP request a receiver sees, per the contract's two formats.

Built once per event and subscription attempt from pure data; the sender only transmits it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook_operator.domain.api import GROUP_VERSION, Plural
from webhook_operator.domain.clock import format_time
from webhook_operator.domain.signing import SigningKey, signature_header
from webhook_operator.domain.specs import Format, SubscriptionSpec


@dataclass(frozen=True)
class EventEnvelope:
    """What the wire needs to know about one WebhookEvent."""

    uid: str
    namespace: str
    name: str
    type: str
    data: Mapping[str, Any]
    source: str | None
    created: dt.datetime

    @property
    def api_path(self) -> str:
        return f"/apis/{GROUP_VERSION}/namespaces/{self.namespace}/{Plural.EVENTS}/{self.name}"


@dataclass(frozen=True)
class OutgoingRequest:
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


def encode_body(event: EventEnvelope, fmt: Format) -> bytes:
    """The body: the envelope for Standard Webhooks, the bare data for CloudEvents binary mode.

    Identical across retries and subscriptions of the same format, so it is computed once.
    """
    payload: object
    if fmt == "CloudEvents":
        payload = event.data
    else:
        payload = {"type": event.type, "timestamp": format_time(event.created), "data": event.data}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def build_request(
    event: EventEnvelope,
    subscription: SubscriptionSpec,
    body: bytes,
    keys: Sequence[SigningKey],
    *,
    attempt_time: int,
    user_agent: str,
) -> OutgoingRequest:
    headers: list[tuple[str, str]] = list(subscription.headers)
    headers += [("Content-Type", "application/json"), ("User-Agent", user_agent)]
    if subscription.format == "CloudEvents":
        headers += [
            ("ce-specversion", "1.0"),
            ("ce-id", event.uid),
            ("ce-type", event.type),
            ("ce-source", event.source or event.api_path),
            ("ce-time", format_time(event.created)),
        ]
    if subscription.format == "StandardWebhooks" or keys:
        headers += [("webhook-id", event.uid), ("webhook-timestamp", str(attempt_time))]
    if keys:
        headers.append(("webhook-signature", signature_header(keys, event.uid, attempt_time, body)))
    return OutgoingRequest(url=subscription.url, headers=tuple(headers), body=body)
