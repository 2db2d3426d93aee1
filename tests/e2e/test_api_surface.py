"""What the API server itself makes of crds/: kubectl explain, CEL rules, an immutable event spec.

None of these needs the operator: they check that the CRDs, as a real API server takes them,
give users the documentation and the validation the contract promises.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.cluster import Kubectl, crd_schema, eventually, normalized

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def subscription(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    # A host under .invalid (RFC 2606): no test event goes to it, and no lookup could reach one.
    return {
        "apiVersion": "webhooks.openplatform.dev/v1alpha1",
        "kind": "WebhookSubscription",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"url": "https://receiver.e2e.invalid/hooks", **spec},
    }


def rule_messages(schema: dict[str, Any]) -> list[str]:
    return [normalized(rule["message"]) for rule in schema.get("x-kubernetes-validations", [])]


def test_kubectl_explain_describes_every_retry_field(kubectl: Kubectl) -> None:
    retry = crd_schema("webhooksubscriptions")["properties"]["spec"]["properties"]["retry"]

    def explained() -> str | None:
        # The API server publishes a new CRD's OpenAPI a moment after it is Established.
        result = kubectl("explain", "webhooksubscription.spec.retry", check=False)
        return result.stdout if result.returncode == 0 and "maxAttempts" in result.stdout else None

    output = eventually(explained, timeout=60, what="`kubectl explain webhooksubscription.spec.retry`")
    text = normalized(output)
    assert "webhooks.openplatform.dev" in text  # GROUP: / KIND: / VERSION: header
    assert normalized(retry["description"]) in text
    for field, schema in retry["properties"].items():
        assert field in text, f"{field} missing from kubectl explain:\n{output}"
        assert normalized(schema["description"]) in text, f"description of {field} missing:\n{output}"


def test_kubectl_explain_documents_the_event_spec(kubectl: Kubectl) -> None:
    spec = crd_schema("webhookevents")["properties"]["spec"]
    output = eventually(
        lambda: kubectl("explain", "whev.spec", check=False).stdout or None,
        timeout=60,
        what="`kubectl explain whev.spec`",
    )
    text = normalized(output)
    for field in ("type", "data", "source", "subscriptions", "ttlSecondsAfterFinished"):
        assert field in text
        assert normalized(spec["properties"][field]["description"]) in text


def test_a_valid_subscription_is_accepted(kubectl: Kubectl, namespace: str) -> None:
    """The control for the rejections below: the same object with an https URL goes in."""
    kubectl.apply([subscription(namespace, "fine", headers={"X-Tenant": "shop"})])
    created = kubectl.json("whsub/fine", "-n", namespace)
    assert created["spec"]["url"] == "https://receiver.e2e.invalid/hooks"
    # Defaults from the schema are filled in by the API server; an omitted retry stays omitted
    # (the operator applies the Standard Webhooks schedule, which no field values express).
    assert created["spec"]["format"] == "StandardWebhooks"
    assert created["spec"]["timeoutSeconds"] == 10
    assert "retry" not in created["spec"]


def test_an_ftp_url_is_rejected_by_the_cel_rule(kubectl: Kubectl, namespace: str) -> None:
    url_schema = crd_schema("webhooksubscriptions")["properties"]["spec"]["properties"]["url"]
    (scheme_message, *_) = rule_messages(url_schema)

    result = kubectl.apply([subscription(namespace, "ftp", url="ftp://files.e2e.invalid/drop")], check=False)

    assert result.returncode != 0
    assert scheme_message in normalized(result.stderr), result.stderr
    assert "spec.url" in result.stderr
    assert kubectl("get", "whsub/ftp", "-n", namespace, check=False).returncode != 0  # not stored


@pytest.mark.parametrize("header", ["webhook-signature", "Content-Type", "ce-id"])
def test_a_reserved_header_is_rejected_by_the_cel_rule(kubectl: Kubectl, namespace: str, header: str) -> None:
    headers_schema = crd_schema("webhooksubscriptions")["properties"]["spec"]["properties"]["headers"]
    (reserved_message,) = [m for m in rule_messages(headers_schema) if "reserved" in m]

    result = kubectl.apply([subscription(namespace, "reserved", headers={header: "forged"})], check=False)

    assert result.returncode != 0
    assert reserved_message in normalized(result.stderr), result.stderr
    assert kubectl("get", "whsub/reserved", "-n", namespace, check=False).returncode != 0


def test_an_events_spec_is_immutable(kubectl: Kubectl, namespace: str) -> None:
    spec_schema = crd_schema("webhookevents")["properties"]["spec"]
    (immutable_message,) = rule_messages(spec_schema)
    event = {
        "apiVersion": "webhooks.openplatform.dev/v1alpha1",
        "kind": "WebhookEvent",
        "metadata": {"name": "order-1", "namespace": namespace},
        "spec": {"type": "order.created", "data": {"orderId": 1}},
    }
    kubectl.apply([event])

    patched = kubectl(
        "patch", "whev/order-1", "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"data": {"orderId": 2}}}), check=False,
    )  # fmt: skip

    assert patched.returncode != 0
    assert immutable_message in normalized(patched.stderr), patched.stderr
    assert kubectl.json("whev/order-1", "-n", namespace)["spec"]["data"] == {"orderId": 1}
    # Metadata stays writable: that is how the redeliver annotation reaches the operator.
    kubectl("annotate", "whev/order-1", "-n", namespace, "webhooks.openplatform.dev/redeliver=e2e")
