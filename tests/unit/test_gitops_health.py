"""What Flux (kstatus) and Argo CD (our Lua health checks) read from each state of both kinds.

The objects are built by the operator's own domain functions (readiness, the kstatus pair,
the event status renderer) into the status the operator writes; the verdicts come from
kstatus's published rules (tests/gitops.py) and the shipped Lua, run in a Lua VM.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.gitops import argocd_health, kstatus
from webhook_operator.domain.conditions import upsert_condition
from webhook_operator.domain.deliveries import Delivery, State
from webhook_operator.domain.event_status import problem_summary, render_status, summarize
from webhook_operator.domain.health import Disabled
from webhook_operator.domain.progress import subscription_progress
from webhook_operator.domain.readiness import readiness
from webhook_operator.domain.specs import SpecProblem, parse_subscription_spec

NOW = dt.datetime(2026, 12, 4, 12, 0, 0, tzinfo=dt.UTC)
SPEC = {"url": "https://crm.example.com/hooks", "signing": {"secretRef": {"name": "key"}}}


def subscription(generation: int = 1, **facts: Any) -> dict[str, Any]:
    """A subscription as the operator leaves it, given the facts its reconciler found."""
    spec = dict(SPEC, **facts.pop("spec", {}))
    ready = readiness(parse_subscription_spec(spec), **facts).condition
    conditions: list[dict[str, Any]] = []
    for condition in (ready, *subscription_progress(ready)):
        conditions = upsert_condition(conditions, condition, now=NOW, generation=generation)
    return {
        "apiVersion": "webhooks.openplatform.dev/v1alpha1",
        "kind": "WebhookSubscription",
        "metadata": {"name": "orders", "namespace": "shop", "generation": generation},
        "spec": spec,
        "status": {"observedGeneration": generation, "conditions": conditions},
    }


def event(*deliveries: Delivery, problem: SpecProblem | None = None) -> dict[str, Any]:
    summary = problem_summary(problem) if problem else summarize(deliveries)
    status = render_status(
        {}, None if problem else deliveries, summary, now=NOW, generation=1, redelivered=None
    )
    return {
        "apiVersion": "webhooks.openplatform.dev/v1alpha1",
        "kind": "WebhookEvent",
        "metadata": {"name": "order-1", "namespace": "shop", "generation": 1},
        "spec": {"type": "order.created", "data": {}},
        "status": status,
    }


DISABLED = Disabled("Gone", "the endpoint answered 410 Gone", NOW, 1)
FAILED = Delivery("orders", State.FAILED, attempts=8, reason="AttemptsExhausted", last_error="HTTP 503")
RETRYING = Delivery("orders", State.RETRYING, attempts=2, last_status_code=503)

# state -> (object, kstatus status, Argo CD status, a word the message must carry)
STATES: dict[str, tuple[dict[str, Any], str, str, str]] = {
    "subscription valid": (subscription(), "Current", "Healthy", "delivering to https://crm.example.com"),
    "subscription paused": (subscription(spec={"paused": True}), "InProgress", "Suspended", "paused"),
    "subscription misconfigured": (
        subscription(spec={"url": "ftp://crm.example.com"}),
        "Failed",
        "Degraded",
        "url",
    ),
    "subscription secret missing": (
        subscription(secret_problem=SpecProblem("SecretNotFound", 'Secret "key" not found')),
        "InProgress",
        "Progressing",
        'Secret "key" not found',
    ),
    "subscription disabled": (subscription(disabled=DISABLED), "Failed", "Degraded", "410 Gone"),
    "subscription egress denied": (
        subscription(egress_problem="10.0.0.7 is a private address"),
        "Failed",
        "Degraded",
        "private address",
    ),
    "event in progress": (event(RETRYING), "InProgress", "Progressing", "0 of 1 delivered"),
    "event delivered": (
        event(Delivery("orders", State.SUCCEEDED, attempts=1)),
        "Current",
        "Healthy",
        "delivered to 1 of 1",
    ),
    "event matched nothing": (event(), "Current", "Healthy", "no subscription matched"),
    "event failed": (event(FAILED), "Failed", "Degraded", "HTTP 503"),
    "event with a bad spec": (
        event(problem=SpecProblem("InvalidSpec", "spec.data must be an object")),
        "Failed",
        "Degraded",
        "spec.data must be an object",
    ),
    "event failed on one, retrying another": (
        event(FAILED, Delivery("billing", State.RETRYING, attempts=1)),
        "InProgress",
        "Progressing",
        "retrying",
    ),
}


@pytest.mark.parametrize("state", STATES)
def test_kstatus_reads_each_state_as_expected(state: str) -> None:
    obj, expected, _, word = STATES[state]
    verdict = kstatus(obj)
    assert verdict.status == expected
    if expected != "Current":
        assert word in verdict.message


@pytest.mark.parametrize("state", STATES)
def test_argocd_health_reads_each_state_as_expected(state: str) -> None:
    obj, _, expected, word = STATES[state]
    verdict = argocd_health(obj)
    assert verdict.status == expected
    assert word in verdict.message


@pytest.mark.parametrize("state", STATES)
def test_both_conditions_are_always_present_and_never_both_true(state: str) -> None:
    obj = STATES[state][0]
    conditions = {c["type"]: c for c in obj["status"]["conditions"]}
    assert {"Reconciling", "Stalled"} <= set(conditions)
    assert (conditions["Reconciling"]["status"], conditions["Stalled"]["status"]) != ("True", "True")
    for condition in conditions.values():
        assert condition["observedGeneration"] == obj["metadata"]["generation"]
        assert condition["reason"]


def test_stalled_reasons_are_the_ready_reasons_a_person_must_fix() -> None:
    stalled = {
        state: next(c for c in obj["status"]["conditions"] if c["type"] == "Stalled")
        for state, (obj, *_) in STATES.items()
    }
    assert stalled["subscription misconfigured"]["reason"] == "InvalidSpec"
    assert stalled["subscription disabled"]["reason"] == "EndpointDisabled"
    assert stalled["subscription egress denied"]["reason"] == "EgressDenied"
    assert stalled["event failed"]["reason"] == "Failed"
    reconciling = next(
        c
        for c in STATES["subscription secret missing"][0]["status"]["conditions"]
        if c["type"] == "Reconciling"
    )
    assert reconciling["reason"] == "SecretNotFound"


def test_a_new_generation_not_yet_observed_is_in_progress_for_both_judges() -> None:
    obj = subscription()
    obj["metadata"]["generation"] = 2
    assert kstatus(obj).status == "InProgress"
    assert argocd_health(obj).status == "Progressing"


@pytest.mark.parametrize("kind", ["WebhookSubscription", "WebhookEvent"])
def test_an_object_the_operator_has_not_seen_yet_is_progressing_in_argocd(kind: str) -> None:
    obj = {"kind": kind, "metadata": {"name": "x", "generation": 1}, "spec": {}}
    assert argocd_health(obj).status == "Progressing"
    assert argocd_health({**obj, "status": {}}).status == "Progressing"


def test_a_stalled_condition_clears_when_the_fault_is_fixed() -> None:
    broken = subscription(disabled=DISABLED)["status"]["conditions"]
    ready = readiness(parse_subscription_spec(SPEC)).condition
    fixed = broken
    for condition in (ready, *subscription_progress(ready)):
        fixed = upsert_condition(fixed, condition, now=NOW + dt.timedelta(minutes=1), generation=2)
    stalled = next(c for c in fixed if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"], stalled["observedGeneration"]) == ("False", "Active", 2)
    assert stalled["lastTransitionTime"] == "2026-12-04T12:01:00Z"
