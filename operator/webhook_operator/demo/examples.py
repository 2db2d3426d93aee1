"""The manifests the demo applies: the repository's examples/, or built-in equivalents.

A wheel does not ship `examples/`, so an install without the repository applies the built-in
copy (tests/integration/test_demo.py keeps the two the same). The demo adds one subscription
whose endpoint answers 503 twice, to show a retry, and points every URL at its local receiver.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import pathlib
import secrets
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from webhook_operator.domain.api import GROUP_VERSION

REPO_EXAMPLES = pathlib.Path(__file__).resolve().parents[3] / "examples"
NAMESPACE = "shop"

# The subscription added to the examples to show a retry: its endpoint answers 503 twice.
RETRY_SUBSCRIPTION = "payments-to-ledger"
RETRY_PATH = "/hooks/payments"
RETRY_EVENT = "payment-3001-captured"
RETRY_FAILURES = (503, 503)


class DemoError(Exception):
    """A step of the demo did not work; the message says which, for the person running it."""


def builtin_examples() -> list[dict[str, Any]]:
    """The equivalent of the repository's examples/*.yaml, for installs without the repository.

    The signing key is made fresh for each run (the repository's is public by design).
    """
    key = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    signing = {"secretRef": {"name": "shop-webhook-signing"}}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "shop-webhook-signing", "namespace": NAMESPACE},
            "type": "Opaque",
            "data": {"signingKey": base64.b64encode(key.encode()).decode()},
        },
        {
            "apiVersion": GROUP_VERSION,
            "kind": "WebhookSubscription",
            "metadata": {"name": "orders-to-crm", "namespace": NAMESPACE},
            "spec": {
                "url": "http://webhook-receiver.shop.svc.cluster.local:8000/hooks/orders",
                "eventTypes": ["order.*"],
                "format": "StandardWebhooks",
                "signing": signing,
                "headers": {"X-Tenant": NAMESPACE},
                "timeoutSeconds": 10,
                "retry": {
                    "maxAttempts": 8,
                    "backoff": "Exponential",
                    "initialDelaySeconds": 5,
                    "maxDelaySeconds": 3600,
                },
                "maxInFlight": 10,
            },
        },
        {
            "apiVersion": GROUP_VERSION,
            "kind": "WebhookSubscription",
            "metadata": {"name": "invoices-to-billing", "namespace": NAMESPACE},
            "spec": {
                "url": "http://webhook-receiver.shop.svc.cluster.local:8001/hooks/invoices",
                "eventTypes": ["invoice.paid"],
                "format": "CloudEvents",
                "signing": signing,
            },
        },
        _event(
            "order-1001-created",
            "order.created",
            {
                "orderId": 1001,
                "customer": {"id": "c-42", "email": "ada@example.com"},
                "lines": [{"sku": "BOOK-123", "quantity": 2, "unitPrice": "19.90"}],
                "total": {"amount": "39.80", "currency": "EUR"},
            },
            source="/shop/orders",
            ttlSecondsAfterFinished=86400,
        ),
        _event(
            "order-1001-shipped",
            "order.shipped",
            {"orderId": 1001, "carrier": "DHL", "trackingNumber": "00340434161234567890"},
            source="/shop/orders",
            subscriptions=["orders-to-crm"],
        ),
        _event(
            "invoice-2001-paid",
            "invoice.paid",
            {
                "invoiceId": 2001,
                "orderId": 1001,
                "amount": {"value": "39.80", "currency": "EUR"},
                "paidAt": "2025-01-15T10:30:00Z",
            },
            source="/shop/billing",
        ),
        _event("product-42-updated", "product.updated", {"productId": 42, "changed": ["price"]}),
    ]


def _event(name: str, type_: str, data: dict[str, Any], **spec: Any) -> dict[str, Any]:
    ordered = {"type": type_, **({"source": spec.pop("source")} if "source" in spec else {})}
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "WebhookEvent",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {**ordered, **spec, "data": data},
    }


def load_examples(directory: pathlib.Path | None) -> tuple[list[dict[str, Any]], str]:
    """The example manifests in `directory` (sorted by file name), or the built-in ones.

    Returns the documents and the directory they came from ("" for the built-in ones).
    """
    if directory is not None and directory.is_dir():
        docs: list[dict[str, Any]] = []
        for path in sorted(directory.glob("*.y*ml")):
            try:
                docs += [
                    d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if isinstance(d, dict)
                ]
            except (OSError, yaml.YAMLError) as error:
                raise DemoError(f"cannot read {path}: {error}") from None
        if any(d.get("kind") == "WebhookSubscription" for d in docs):
            return docs, f"{_shown_path(directory)}/"
    return builtin_examples(), ""


def _shown_path(path: pathlib.Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(pathlib.Path.cwd()))
    return str(path)


def retry_resources(secret_name: str | None) -> list[dict[str, Any]]:
    """A subscription with fast retries whose endpoint fails twice, and one event for it."""
    spec: dict[str, Any] = {
        "url": f"http://localhost:8000{RETRY_PATH}",
        "eventTypes": ["payment.*"],
        "retry": {"maxAttempts": 5, "backoff": "Exponential", "initialDelaySeconds": 1, "maxDelaySeconds": 2},
    }
    if secret_name is not None:
        spec["signing"] = {"secretRef": {"name": secret_name}}
    return [
        {
            "apiVersion": GROUP_VERSION,
            "kind": "WebhookSubscription",
            "metadata": {"name": RETRY_SUBSCRIPTION, "namespace": NAMESPACE},
            "spec": spec,
        },
        _event(
            RETRY_EVENT,
            "payment.captured",
            {"paymentId": 3001, "orderId": 1001, "amount": "39.80"},
            source="/shop/payments",
        ),
    ]


def select_order_events(docs: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """`--events N` order events in all: the examples' own first, then generated ones."""
    order_events = [d for d in docs if d.get("kind") == "WebhookEvent" and _type(d).startswith("order.")]
    kept = order_events[: max(0, count)]
    generated = [
        {
            "apiVersion": GROUP_VERSION,
            "kind": "WebhookEvent",
            "metadata": {"generateName": "order-", "namespace": NAMESPACE},
            "spec": {"type": "order.created", "source": "/shop/orders", "data": {"orderId": 1100 + i}},
        }
        for i in range(max(0, count - len(order_events)))
    ]
    return [d for d in docs if d not in order_events or d in kept] + generated


def _type(doc: Mapping[str, Any]) -> str:
    return str((doc.get("spec") or {}).get("type", ""))


def point_at(doc: dict[str, Any], receiver_url: str) -> dict[str, Any]:
    """A copy of a subscription whose URL keeps its path but goes to the local receiver."""
    doc = copy.deepcopy(doc)
    url = urllib.parse.urlsplit(doc["spec"]["url"])
    doc["spec"]["url"] = receiver_url + (url.path or "/") + (f"?{url.query}" if url.query else "")
    return doc


def signing_keys(docs: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """The `signingKey` of every Secret in the manifests, by (namespace, name)."""
    keys = {}
    for doc in docs:
        if doc.get("kind") != "Secret":
            continue
        meta = doc.get("metadata") or {}
        value = (doc.get("stringData") or {}).get("signingKey")
        if value is None and (encoded := (doc.get("data") or {}).get("signingKey")) is not None:
            value = base64.b64decode(encoded).decode()
        if value is not None:
            keys[(meta.get("namespace", NAMESPACE), meta["name"])] = str(value)
    return keys


def as_stored(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What an API server stores for `doc`: a Secret's stringData moves into base64 data."""
    body = copy.deepcopy(dict(doc))
    if body.get("kind") == "Secret" and "stringData" in body:
        data = dict(body.get("data") or {})
        for key, value in body.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        body["data"] = data
    return body
