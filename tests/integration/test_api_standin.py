"""The Kubernetes API stand-in behaves like kube-apiserver where the operator relies on it.

Every test talks real HTTP to the served stand-in, with plain aiohttp (as our `kube.py` does) or
with the real kopf operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kopf
import pytest

from webhook_operator.testing.api_standin import ApiStandin, StandinError, serve, serve_api_standin

GROUP = "webhooks.openplatform.dev"
SUBS = f"/apis/{GROUP}/v1alpha1/namespaces/shop/webhooksubscriptions"
EVENTS = f"/apis/{GROUP}/v1alpha1/namespaces/shop/webhookevents"
MERGE = {"Content-Type": "application/merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def subscription(
    name: str = "orders-to-crm", labels: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "WebhookSubscription",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"url": "https://crm.example.com/hooks", **spec},
    }


@pytest.fixture
async def standin() -> AsyncIterator[ApiStandin]:
    async with serve_api_standin() as served:  # the package's crds/, i.e. the repository's
        yield served
        assert not served.errors, "the stand-in itself failed (a 500 with a traceback)"


@pytest.fixture
async def http(standin: ApiStandin) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=standin.url) as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body)
    headers = headers or {"Content-Type": "application/json"}
    async with http.request(method, path, data=data, headers=headers) as rsp:
        answer = await rsp.read()
        return rsp.status, json.loads(answer) if answer else None


async def watch(http: aiohttp.ClientSession, path: str, count: int, **params: str) -> list[Any]:
    """The first `count` events of a watch (fails after 5 s)."""
    events: list[Any] = []
    async with asyncio.timeout(5), http.get(path, params={"watch": "true", **params}) as rsp:
        async for line in rsp.content:
            events.append(json.loads(line))
            if len(events) == count:
                break
    return events


async def test_create_sets_uid_resource_version_generation_and_creation_timestamp(http):
    status, obj = await call(http, "POST", SUBS, subscription())
    assert status == 201
    meta = obj["metadata"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", meta["uid"])
    assert int(meta["resourceVersion"]) > 0
    assert meta["generation"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert meta["namespace"] == "shop"


async def test_every_write_gets_a_higher_resource_version(http):
    _, first = await call(http, "POST", SUBS, subscription("a"))
    _, second = await call(http, "POST", SUBS, subscription("b"))
    _, patched = await call(http, "PATCH", f"{SUBS}/a", {"metadata": {"labels": {"x": "1"}}}, MERGE)
    versions = [int(o["metadata"]["resourceVersion"]) for o in (first, second, patched)]
    assert versions == sorted(versions)
    assert len(set(versions)) == 3


async def test_generation_bumps_on_spec_changes_only(http):
    await call(http, "POST", SUBS, subscription())
    _, labelled = await call(
        http, "PATCH", f"{SUBS}/orders-to-crm", {"metadata": {"labels": {"a": "b"}}}, MERGE
    )
    _, with_status = await call(
        http, "PATCH", f"{SUBS}/orders-to-crm/status", {"status": {"deliveredCount": 1}}, MERGE
    )
    _, paused = await call(http, "PATCH", f"{SUBS}/orders-to-crm", {"spec": {"paused": True}}, MERGE)
    generations = [o["metadata"]["generation"] for o in (labelled, with_status, paused)]
    assert generations == [1, 1, 2]


async def test_a_write_that_changes_nothing_keeps_the_resource_version(http):
    _, created = await call(http, "POST", SUBS, subscription(paused=False))
    _, same = await call(http, "PATCH", f"{SUBS}/orders-to-crm", {"spec": {"paused": False}}, MERGE)
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_generate_name_appends_five_random_characters(http):
    body = {"metadata": {"generateName": "order-"}, "spec": {"type": "order.created", "data": {}}}
    _, first = await call(http, "POST", EVENTS, body)
    _, second = await call(http, "POST", EVENTS, body)
    assert re.fullmatch(r"order-[a-z0-9]{5}", first["metadata"]["name"])
    assert first["metadata"]["name"] != second["metadata"]["name"]


async def test_creating_an_existing_name_is_409_already_exists(http):
    await call(http, "POST", SUBS, subscription())
    status, body = await call(http, "POST", SUBS, subscription())
    assert (status, body["kind"], body["reason"]) == (409, "Status", "AlreadyExists")


async def test_a_missing_object_is_404_not_found(http):
    status, body = await call(http, "GET", f"{SUBS}/nobody")
    assert (status, body["reason"], body["code"]) == (404, "NotFound", 404)


async def test_a_status_patch_changes_only_the_status(http):
    await call(http, "POST", SUBS, subscription())
    patch = {"spec": {"paused": True}, "metadata": {"labels": {"a": "b"}}, "status": {"deliveredCount": 3}}
    status, obj = await call(http, "PATCH", f"{SUBS}/orders-to-crm/status", patch, MERGE)
    assert status == 200
    assert obj["status"] == {"deliveredCount": 3}
    assert "paused" not in obj["spec"]
    assert obj["metadata"]["labels"] == {}


async def test_a_main_patch_ignores_status_changes(http):
    await call(http, "POST", SUBS, {**subscription(), "status": {"deliveredCount": 9}})
    await call(http, "PATCH", f"{SUBS}/orders-to-crm/status", {"status": {"deliveredCount": 1}}, MERGE)
    patch = {"spec": {"paused": True}, "status": {"deliveredCount": 2}}
    _, obj = await call(http, "PATCH", f"{SUBS}/orders-to-crm", patch, MERGE)
    assert obj["spec"]["paused"] is True
    assert obj["status"] == {"deliveredCount": 1}


async def test_merge_patch_null_deletes_a_key_and_replaces_lists_whole(http):
    await call(http, "POST", SUBS, subscription(eventTypes=["a", "b"], headers={"X-A": "1", "X-B": "2"}))
    patch = {"spec": {"headers": {"X-A": None}, "eventTypes": ["c"]}}
    _, obj = await call(http, "PATCH", f"{SUBS}/orders-to-crm", patch, MERGE)
    assert obj["spec"]["headers"] == {"X-B": "2"}
    assert obj["spec"]["eventTypes"] == ["c"]


async def test_a_failed_json_patch_test_is_422_and_leaves_the_object_unchanged(http):
    _, created = await call(http, "POST", SUBS, subscription())
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "999999"},
        {"op": "add", "path": "/status", "value": {"deliveredCount": 1}},
    ]
    status, body = await call(http, "PATCH", f"{SUBS}/orders-to-crm/status", ops, JSON_PATCH)
    assert (status, body["kind"], body["reason"]) == (422, "Status", "Invalid")
    _, current = await call(http, "GET", f"{SUBS}/orders-to-crm")
    assert current == created


async def test_a_passing_json_patch_test_applies_the_operations(http):
    _, created = await call(http, "POST", SUBS, subscription())
    version = created["metadata"]["resourceVersion"]
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": version},
        {"op": "add", "path": "/status", "value": {"deliveredCount": 1}},
    ]
    status, obj = await call(http, "PATCH", f"{SUBS}/orders-to-crm/status", ops, JSON_PATCH)
    assert (status, obj["status"]) == (200, {"deliveredCount": 1})


async def test_a_json_patch_that_cannot_apply_is_422_and_an_undecodable_one_is_400(http):
    await call(http, "POST", SUBS, subscription())
    missing = [{"op": "replace", "path": "/spec/nothing/here", "value": 1}]
    assert (await call(http, "PATCH", f"{SUBS}/orders-to-crm", missing, JSON_PATCH))[0] == 422
    assert (await call(http, "PATCH", f"{SUBS}/orders-to-crm", {"op": "add"}, JSON_PATCH))[0] == 400


async def test_strategic_merge_patch_of_a_custom_resource_is_415(http):
    await call(http, "POST", SUBS, subscription())
    headers = {"Content-Type": "application/strategic-merge-patch+json"}
    status, body = await call(http, "PATCH", f"{SUBS}/orders-to-crm", {"spec": {}}, headers)
    assert (status, body["reason"]) == (415, "UnsupportedMediaType")


async def test_a_stale_resource_version_in_a_merge_patch_is_409_conflict(http):
    _, created = await call(http, "POST", SUBS, subscription())
    stale = created["metadata"]["resourceVersion"]
    await call(http, "PATCH", f"{SUBS}/orders-to-crm", {"spec": {"paused": True}}, MERGE)
    patch = {"metadata": {"resourceVersion": stale}, "status": {"deliveredCount": 1}}
    status, body = await call(http, "PATCH", f"{SUBS}/orders-to-crm/status", patch, MERGE)
    assert (status, body["reason"]) == (409, "Conflict")


async def test_a_put_with_a_stale_resource_version_is_409_conflict(http):
    _, created = await call(http, "POST", SUBS, subscription())
    await call(http, "PATCH", f"{SUBS}/orders-to-crm", {"spec": {"paused": True}}, MERGE)
    status, body = await call(http, "PUT", f"{SUBS}/orders-to-crm", created)
    assert (status, body["reason"]) == (409, "Conflict")


async def test_a_put_with_the_current_resource_version_replaces_the_object(http):
    _, created = await call(http, "POST", SUBS, subscription(paused=True))
    replacement = {**created, "spec": {"url": "https://other.example.com/"}}
    status, obj = await call(http, "PUT", f"{SUBS}/orders-to-crm", replacement)
    assert (status, obj["spec"], obj["metadata"]["generation"]) == (200, replacement["spec"], 2)


async def test_delete_waits_for_finalizers_and_completes_when_the_last_one_is_removed(http):
    await call(http, "POST", SUBS, {**subscription(), "metadata": {"name": "s", "finalizers": ["x/y"]}})
    status, deleting = await call(http, "DELETE", f"{SUBS}/s")
    assert status == 200
    assert deleting["metadata"]["deletionTimestamp"]
    assert (await call(http, "GET", f"{SUBS}/s"))[0] == 200
    await call(http, "PATCH", f"{SUBS}/s", {"metadata": {"finalizers": None}}, MERGE)
    assert (await call(http, "GET", f"{SUBS}/s"))[0] == 404


async def test_watch_sees_added_modified_deleted_with_increasing_resource_versions(http, standin):
    _, listed = await call(http, "GET", SUBS)
    since = listed["metadata"]["resourceVersion"]
    stream = asyncio.create_task(watch(http, SUBS, 3, resourceVersion=since))
    await asyncio.sleep(0.1)
    await call(http, "POST", SUBS, subscription())
    await call(http, "PATCH", f"{SUBS}/orders-to-crm", {"spec": {"paused": True}}, MERGE)
    await call(http, "DELETE", f"{SUBS}/orders-to-crm")
    events = await stream
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions)
    assert len(set(versions)) == 3
    assert versions[-1] == standin.resource_version


async def test_a_watch_from_a_listed_resource_version_gets_the_events_made_in_between(http):
    _, listed = await call(http, "GET", SUBS)
    await call(http, "POST", SUBS, subscription("made-after-the-list"))
    events = await watch(http, SUBS, 1, resourceVersion=listed["metadata"]["resourceVersion"])
    seen = [(e["type"], e["object"]["metadata"]["name"]) for e in events]
    assert seen == [("ADDED", "made-after-the-list")]


async def test_a_watch_from_an_expired_resource_version_gets_410_gone():
    async with (
        serve_api_standin(watch_log_size=2) as standin,
        aiohttp.ClientSession(base_url=standin.url) as http,
    ):
        for name in "abc":
            await call(http, "POST", SUBS, subscription(name))
        [event] = await watch(http, SUBS, 1, resourceVersion="1")
    assert (event["type"], event["object"]["code"]) == ("ERROR", 410)


async def test_a_list_reports_the_current_resource_version_and_filters_by_labels(http, standin):
    await call(http, "POST", SUBS, subscription("a", labels={"tier": "gold"}))
    await call(http, "POST", SUBS, subscription("b", labels={"tier": "tin"}))
    _, listed = await call(http, "GET", f"{SUBS}?labelSelector=tier%3Dgold")
    assert listed["metadata"]["resourceVersion"] == str(standin.resource_version)
    assert [item["metadata"]["name"] for item in listed["items"]] == ["a"]


async def test_a_list_holds_only_its_own_resource_and_nothing_deleted(http):
    await call(http, "POST", SUBS, subscription("kept"))
    await call(http, "POST", SUBS, subscription("gone"))
    await call(http, "POST", EVENTS, {"metadata": {"name": "kept"}, "spec": {"type": "t", "data": {}}})
    await call(http, "DELETE", f"{SUBS}/gone")
    _, listed = await call(http, "GET", SUBS)
    assert [(item["kind"], item["metadata"]["name"]) for item in listed["items"]] == [
        ("WebhookSubscription", "kept")
    ]


async def test_label_and_field_selectors_support_set_and_inequality_terms(http):
    for name, tier in (("a", "gold"), ("b", "tin"), ("c", None)):
        await call(http, "POST", SUBS, subscription(name, labels={"tier": tier} if tier else {}))

    async def names(query: str) -> list[str]:
        _, listed = await call(http, "GET", f"{SUBS}?{query}")
        return [item["metadata"]["name"] for item in listed["items"]]

    assert await names("labelSelector=tier+in+(gold,silver)") == ["a"]
    assert await names("labelSelector=tier+notin+(gold)") == ["b", "c"]
    assert await names("labelSelector=!tier") == ["c"]
    assert await names("labelSelector=tier!%3Dgold,tier") == ["b"]
    assert await names("fieldSelector=metadata.name%3Db") == ["b"]
    assert (await call(http, "GET", f"{SUBS}?labelSelector=(oops"))[0] == 400


async def test_a_watch_with_initial_events_ends_them_with_a_bookmark(http):
    await call(http, "POST", SUBS, subscription())
    events = await watch(http, SUBS, 2, sendInitialEvents="true", resourceVersionMatch="NotOlderThan")
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_a_list_pages_with_limit_and_continue(http):
    for name in "abc":
        await call(http, "POST", SUBS, subscription(name))
    _, first = await call(http, "GET", f"{SUBS}?limit=2")
    _, rest = await call(http, "GET", f"{SUBS}?limit=2&continue={first['metadata']['continue']}")
    assert [i["metadata"]["name"] for i in first["items"] + rest["items"]] == ["a", "b", "c"]
    assert not rest["metadata"].get("continue")


async def test_discovery_lists_both_crds_with_short_names_categories_and_status(http):
    _, groups = await call(http, "GET", "/apis")
    assert GROUP in {group["name"] for group in groups["groups"]}
    _, listing = await call(http, "GET", f"/apis/{GROUP}/v1alpha1")
    resources = {r["name"]: r for r in listing["resources"]}
    assert set(resources) == {
        "webhooksubscriptions",
        "webhooksubscriptions/status",
        "webhookevents",
        "webhookevents/status",
        "webhooksources",
        "webhooksources/status",
    }
    assert resources["webhooksubscriptions"]["shortNames"] == ["whsub"]
    assert resources["webhooksources"]["shortNames"] == ["whsrc"]
    assert resources["webhookevents"]["shortNames"] == ["whev"]
    assert resources["webhookevents"]["kind"] == "WebhookEvent"
    assert resources["webhookevents"]["namespaced"] is True
    assert "webhooks" in resources["webhookevents"]["categories"]
    assert {"watch", "patch", "create"} <= set(resources["webhookevents"]["verbs"])


async def test_built_in_core_resources_are_discoverable_and_events_can_be_posted(http):
    _, core = await call(http, "GET", "/api/v1")
    assert core["groupVersion"] == "v1"
    assert {"secrets", "events", "namespaces"} <= {r["name"] for r in core["resources"]}
    event = {
        "metadata": {"generateName": "kopf-event-"},
        "reason": "Tested",
        "message": "hello",
        "involvedObject": {"kind": "WebhookEvent", "name": "e1", "namespace": "shop"},
    }
    status, obj = await call(http, "POST", "/api/v1/namespaces/shop/events", event)
    assert (status, obj["kind"], obj["metadata"]["namespace"]) == (201, "Event", "shop")


async def test_namespaces_are_served_at_their_core_paths(http):
    status, created = await call(http, "POST", "/api/v1/namespaces", {"metadata": {"name": "shop"}})
    assert (status, created["kind"]) == (201, "Namespace")
    assert (await call(http, "GET", "/api/v1/namespaces/shop"))[0] == 200
    _, listed = await call(http, "GET", "/api/v1/namespaces")
    assert [n["metadata"]["name"] for n in listed["items"]] == ["shop"]


async def test_fault_injection_answers_the_status_and_does_not_apply_the_change(http, standin):
    await call(http, "POST", SUBS, subscription())
    standin.faults.inject(share=1.0, statuses=(429,), retry_after=3, methods={"PATCH"})
    async with http.patch(
        f"{SUBS}/orders-to-crm", data=json.dumps({"spec": {"paused": True}}), headers=MERGE
    ) as rsp:
        status, retry_after, body = rsp.status, rsp.headers.get("Retry-After"), await rsp.json()
    standin.faults.clear()
    assert (status, retry_after, body["reason"]) == (429, "3", "TooManyRequests")
    assert body["details"]["retryAfterSeconds"] == 3
    _, current = await call(http, "GET", f"{SUBS}/orders-to-crm")
    assert "paused" not in current["spec"]
    assert standin.faults.injected == {429: 1}


async def test_fault_injection_hits_a_deterministic_share_of_requests(standin):
    def run(seed: int) -> list[int | None]:
        standin.faults.inject(share=0.3, statuses=(500, 503), methods={"GET"}, seed=seed)
        return [standin.faults.draw("GET", "webhookevents", "", watch=False) for _ in range(1000)]

    first, again = run(seed=5), run(seed=5)
    assert first == again
    assert 250 < sum(code is not None for code in first) < 350


async def test_cut_watches_ends_the_open_streams(http, standin):
    async with http.get(SUBS, params={"watch": "true", "resourceVersion": "1"}) as rsp:
        for _ in range(50):
            if standin.open_watches:
                break
            await asyncio.sleep(0.01)
        assert standin.cut_watches() == 1
        async with asyncio.timeout(2):
            assert await rsp.content.read() == b""
    assert standin.open_watches == 0


async def test_requests_are_counted_by_verb_resource_and_subresource(http, standin):
    await call(http, "POST", SUBS, subscription())
    await call(http, "PATCH", f"{SUBS}/orders-to-crm/status", {"status": {"deliveredCount": 1}}, MERGE)
    await call(http, "GET", f"{SUBS}/orders-to-crm")
    assert standin.count("create", resource="webhooksubscriptions") == 1
    assert standin.count("patch", subresource="status") == 1
    assert standin.count("patch", subresource="") == 0
    assert standin.count("create", "patch", "update", "delete") == 2


async def test_discovery_and_objects_work_without_a_request_history():
    async with (
        serve_api_standin(request_history=0) as standin,
        aiohttp.ClientSession(base_url=standin.url) as http,
    ):
        assert (await call(http, "GET", f"/apis/{GROUP}/v1alpha1"))[0] == 200
        assert (await call(http, "POST", SUBS, subscription()))[0] == 201
        assert not standin.errors


async def test_a_stand_in_built_by_the_caller_is_served_as_is():
    class Subclassed(ApiStandin):
        pass

    async with serve(Subclassed(keep_alive=True)) as standin:
        assert isinstance(standin, Subclassed)
        assert (await standin.create("whsub", "shop", subscription()))["metadata"]["uid"]


async def test_the_request_history_stays_bounded():
    async with serve_api_standin(request_history=5) as standin:
        for name in "abcdefgh":
            await standin.create("whsub", "shop", subscription(name))
        assert len(list(standin)) == 5


async def test_object_history_is_kept_only_when_asked_for():
    async with serve_api_standin(keep_history=True) as standin:
        await standin.create("whsub", "shop", subscription())
        await standin.patch_status("whsub", "shop", "orders-to-crm", {"deliveredCount": 1})
        history = standin.objects[standin.resolve("whsub"), "shop", "orders-to-crm"].history
        assert [version.get("status") for version in history] == [None, {"deliveredCount": 1}]


async def test_a_kmock_reaction_answers_instead_of_the_stand_in_and_stores_nothing(http, standin):
    await call(http, "POST", SUBS, subscription())
    standin["patch", standin.subresource("status")][:1] << 409
    patch = {"status": {"deliveredCount": 1}}
    assert (await call(http, "PATCH", f"{SUBS}/orders-to-crm/status", patch, MERGE))[0] == 409
    assert "status" not in (await call(http, "GET", f"{SUBS}/orders-to-crm"))[1]
    assert (await call(http, "PATCH", f"{SUBS}/orders-to-crm/status", patch, MERGE))[0] == 200


async def test_the_helpers_create_read_and_patch_status_over_http(standin):
    created = await standin.create("whsub", "shop", subscription())
    await standin.patch_status("whsub", "shop", "orders-to-crm", {"deliveredCount": 2})
    current = await standin.read("webhooksubscriptions", "shop", "orders-to-crm")
    assert current["status"] == {"deliveredCount": 2}
    assert current["metadata"]["uid"] == created["metadata"]["uid"]
    with pytest.raises(StandinError) as error:
        await standin.read("whsub", "shop", "nobody")
    assert error.value.status == 404


@contextlib.asynccontextmanager
async def running_kopf(standin: ApiStandin) -> AsyncIterator[asyncio.Queue[tuple[str | None, str]]]:
    """The real kopf operator against the stand-in, reporting the subscription events it sees.

    Start and stop it in the test's own task, not in an async fixture: at shutdown kopf waits up to
    5 s for every task created after it started, and a fixture's teardown runs in such a task.
    """
    seen: asyncio.Queue[tuple[str | None, str]] = asyncio.Queue()
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=str(standin.url), insecure=True)

    @kopf.on.event(GROUP, "v1alpha1", "webhooksubscriptions", registry=registry)
    def subscription_event(event: dict[str, Any], name: str, **_: Any) -> None:
        seen.put_nowait((event["type"], name))

    stop_flag = asyncio.Event()
    operator = asyncio.create_task(
        kopf.operator(registry=registry, standalone=True, clusterwide=True, stop_flag=stop_flag)
    )
    try:
        yield seen
    finally:
        started = time.monotonic()
        stop_flag.set()
        await asyncio.wait_for(operator, timeout=10)
    assert time.monotonic() - started < 2, "kopf waited for lingering tasks at shutdown"


async def next_seen(seen: asyncio.Queue[tuple[str | None, str]], name: str) -> str | None:
    async with asyncio.timeout(10):
        while True:
            event_type, seen_name = await seen.get()
            if seen_name == name:
                return event_type


async def test_the_real_kopf_operator_sees_an_object_created_over_the_api_and_stops_at_once(standin):
    async with running_kopf(standin) as seen:
        await standin.create("webhooksubscriptions", "shop", subscription("seen-by-kopf"))
        assert await next_seen(seen, "seen-by-kopf") in ("ADDED", None)  # None: found by listing


async def test_kopf_reconnects_after_the_watches_are_cut_and_misses_nothing(standin):
    async with running_kopf(standin) as seen:
        await standin.create("webhooksubscriptions", "shop", subscription("before"))
        await next_seen(seen, "before")
        assert standin.cut_watches() >= 1
        await standin.create("webhooksubscriptions", "shop", subscription("after"))
        assert await next_seen(seen, "after") == "ADDED"
