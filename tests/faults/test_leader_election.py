"""High availability on the real API server: two replicas with --leader-elect, and shards.

- Of two replicas exactly one delivers; after kill -9 of it the other takes over within the
  lease duration plus a few seconds, nothing is lost, and the receiver sees a webhook-id twice
  only for an attempt that was in flight at the kill.
- SIGTERM hands over at once: the leader finishes its attempts and releases the Lease.
- A restart of the API server during leadership loses nothing.
- Two shards split 20 namespaces with no overlap and no gap.

They need KUBECONFIG (skipped without a cluster; CI starts one and sets E2E_REQUIRE_CLUSTER).
The measured failover and handover times are printed (`-s`) for docs/guarantees.md.
"""

from __future__ import annotations

import itertools
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiException

from tests.e2e.cluster import CRDS, crd_names
from tests.e2e.receiver import LocalReceiver, RecordedRequest
from tests.faults.real_api import (
    Api,
    Operator,
    Publisher,
    delivered,
    dumps,
    eventually,
    operators,
    real_cluster,
    receipts_by_id,
    restart_apiserver,
    restartable_apiserver,
)
from webhook_operator.domain.leadership import Timings
from webhook_operator.domain.shards import shard_of

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

LEASE = Timings()  # the operator's defaults: 15 s lease, 10 s renew deadline, 2 s retry
START_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def api() -> Api:
    real_cluster()
    subprocess.run(["kubectl", "apply", "-f", str(CRDS)], check=True, capture_output=True, timeout=60)
    subprocess.run(
        [
            "kubectl",
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            *(f"crd/{n}" for n in crd_names()),
        ],
        check=True,
        capture_output=True,
        timeout=90,
    )
    return Api()


@pytest.fixture
def new_namespace(api: Api) -> Iterator[Callable[..., str]]:
    created: list[str] = []

    def make(prefix: str = "ha") -> str:
        name = f"{prefix}-{secrets.token_hex(4)}"
        api.create_namespace(name)
        created.append(name)
        return name

    yield make
    for name in created:
        api.delete_namespace(name)


@pytest.fixture(scope="module")
def receiver() -> Iterator[LocalReceiver]:
    server = LocalReceiver().start()
    yield server
    server.stop()


def requests_in(receiver: LocalReceiver, namespace: str) -> list[RecordedRequest]:
    return [r for r in receiver.records() if r.path.startswith(f"/{namespace}/")]


def flags(lease_namespace: str, election_id: str, *namespaces: str) -> list[str]:
    watched = [part for namespace in namespaces for part in ("--namespace", namespace)]
    return [
        "--leader-elect", "--leader-election-namespace", lease_namespace,
        "--leader-election-id", election_id, "--log-format", "json", *watched,
    ]  # fmt: skip


def leader_and_standby(start: Callable[..., Operator], args: list[str]) -> tuple[Operator, Operator]:
    """Start one replica, wait until it leads, then the second, until it stands by."""
    first = start("first", *args)
    eventually(first.leading, timeout=START_TIMEOUT, what="the first replica to lead", interval=0.2)
    second = start("second", *args)
    eventually(second.standing_by, timeout=START_TIMEOUT, what="the second replica to stand by", interval=0.2)
    return first, second


def all_delivered(api: Api, namespace: str, *, timeout: float) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]] | None:
        try:
            events = api.events(namespace)
        except ApiException:  # 429 "storage is (re)initializing" for a while after a restart
            return None
        return events if events and all(delivered(e) for e in events) else None

    try:
        return list(
            eventually(check, timeout=timeout, what=f"every event in {namespace} Delivered", interval=1)
        )
    except AssertionError:
        late = [e["metadata"]["name"] for e in api.events(namespace) if not delivered(e)]
        raise AssertionError(f"{len(late)} events not Delivered: {late[:20]}") from None


def assert_each_delivery_succeeded_once(events: list[dict[str, Any]]) -> None:
    for event in events:
        deliveries = event["status"]["deliveries"]
        assert [d["state"] for d in deliveries] == ["Succeeded"], dumps(event["status"])


def warm_up(api: Api, receiver: LocalReceiver, namespace: str) -> None:
    api.publish(namespace, "warm-up", {"warm": True})
    eventually(
        lambda: requests_in(receiver, namespace), timeout=30, what="the warm-up delivery", interval=0.2
    )


def subscribed_namespace(api: Api, new_namespace: Callable[..., str], receiver: LocalReceiver) -> str:
    namespace = new_namespace()
    api.subscribe(namespace, "orders", f"{receiver.base_url}/{namespace}/orders")
    return namespace


def test_one_of_two_replicas_delivers_and_after_kill_9_the_other_takes_over_with_nothing_lost(
    api: Api, new_namespace: Callable[[], str], receiver: LocalReceiver, tmp_path: Path
) -> None:
    namespace = subscribed_namespace(api, new_namespace, receiver)
    with operators(tmp_path) as start:
        leader, standby = leader_and_standby(start, flags(namespace, "ha-kill", namespace))
        warm_up(api, receiver, namespace)
        with Publisher(api, namespace, "load", interval=0.1):
            time.sleep(3)
            assert sum(leader.attempts_by_namespace().values()) > 0
            assert standby.attempts_by_namespace() == {}, "a standby must send nothing"
            killed_at = time.time()
            leader.kill()
            eventually(
                standby.leading, timeout=LEASE.lease_duration + 10, what="the standby to lead", interval=0.2
            )

            def first_receipt_after_kill() -> float | None:
                # +0.5 s: a request the leader sent just before it died may still be read then.
                late = [r.at for r in requests_in(receiver, namespace) if r.at > killed_at + 0.5]
                return min(late, default=None)

            took_over_at = eventually(first_receipt_after_kill, timeout=15, what="a delivery after the kill")
            time.sleep(2)
        events = all_delivered(api, namespace, timeout=60)

    failover = took_over_at - killed_at
    print(f"\nkill -9 failover: {failover:.1f} s (first delivery after the kill), {len(events)} events")
    assert failover <= LEASE.lease_duration + 5
    assert_each_delivery_succeeded_once(events)
    received = receipts_by_id(requests_in(receiver, namespace))
    assert {e["metadata"]["uid"] for e in events} <= set(received), "an event was never received"
    for webhook_id, times in received.items():
        if len(times) > 1:  # only an attempt in flight at the kill, sent again by the new leader
            assert len(times) == 2, (webhook_id, times)
            assert times[0] <= killed_at + 0.5 < times[1], (webhook_id, times, killed_at)


def test_sigterm_hands_over_at_once_with_no_repeated_delivery(
    api: Api, new_namespace: Callable[[], str], receiver: LocalReceiver, tmp_path: Path
) -> None:
    namespace = subscribed_namespace(api, new_namespace, receiver)
    with operators(tmp_path) as start:
        leader, standby = leader_and_standby(start, flags(namespace, "ha-term", namespace))
        warm_up(api, receiver, namespace)
        with Publisher(api, namespace, "load", interval=0.05):
            time.sleep(2)
            terminated_at = time.time()
            assert leader.terminate() == 0
            eventually(standby.leading, timeout=10, what="the standby to lead", interval=0.2)
            time.sleep(2)
        events = all_delivered(api, namespace, timeout=60)

    times = sorted(r.at for r in requests_in(receiver, namespace) if r.at >= terminated_at - 1)
    gap = max(later - earlier for earlier, later in itertools.pairwise(times))
    print(f"\nSIGTERM handover: longest pause between deliveries {gap:.2f} s, {len(events)} events")
    assert gap <= 3.0
    assert_each_delivery_succeeded_once(events)
    received = receipts_by_id(requests_in(receiver, namespace))
    assert {e["metadata"]["uid"] for e in events} == set(received)
    assert all(len(times) == 1 for times in received.values()), "a delivery was sent twice"


def test_an_api_server_restart_during_leadership_loses_nothing(
    api: Api, new_namespace: Callable[[], str], receiver: LocalReceiver, tmp_path: Path
) -> None:
    target = restartable_apiserver()
    if target is None:
        pytest.skip(
            "KUBECONFIG's API server is not a local kube-apiserver kit instance this test can restart"
        )
    namespace = subscribed_namespace(api, new_namespace, receiver)
    with operators(tmp_path) as start:
        leader, standby = leader_and_standby(start, flags(namespace, "ha-restart", namespace))
        holder = api.lease_holder(namespace, "ha-restart")
        warm_up(api, receiver, namespace)
        with Publisher(api, namespace, "load", interval=0.2) as publisher:
            time.sleep(2)
            outage = restart_apiserver(*target)
            time.sleep(3)
        events = all_delivered(api, namespace, timeout=90)
        now_holder = api.lease_holder(namespace, "ha-restart")
        print(f"\nAPI server restart: unavailable {outage:.1f} s; leader kept: {now_holder == holder}")
        assert publisher.sent > 0
        assert [leader.leading(), standby.leading()].count(True) == 1
        if now_holder != holder:  # the outage outlasted the renew deadline: the leader stepped down
            assert leader.process.poll() == 1, "a leader that cannot renew stops and exits 1"
            assert "lost the leader Lease" in leader.logs()

    assert_each_delivery_succeeded_once(events)
    received = receipts_by_id(requests_in(receiver, namespace))
    assert {e["metadata"]["uid"] for e in events} <= set(received)
    if now_holder == holder:  # no handover: nothing may have been sent twice
        assert all(len(times) == 1 for times in received.values())


def test_two_shards_split_twenty_namespaces_with_no_overlap_and_no_gap(
    api: Api, new_namespace: Callable[[], str], receiver: LocalReceiver, tmp_path: Path
) -> None:
    prefix = f"ha-{secrets.token_hex(3)}"
    namespaces = [new_namespace(prefix) for _ in range(20)]
    for namespace in namespaces:
        api.subscribe(namespace, "orders", f"{receiver.base_url}/{namespace}/orders")
    # A pattern, as in production: the shard filter composes with the namespace scope.
    args = flags(namespaces[0], "ha-shards", f"{prefix}-*")
    with operators(tmp_path) as start:
        shards = [start(f"shard-{i}", "--shard-index", str(i), "--shard-count", "2", *args) for i in (0, 1)]
        for shard in shards:
            eventually(shard.leading, timeout=START_TIMEOUT, what=f"{shard.name} to lead its shard")
        for namespace in namespaces:  # as a user would: each shard's leader has seen its subscriptions
            eventually(
                lambda ns=namespace: api.ready(ns, "orders"), timeout=60, what=f"orders Ready in {namespace}"
            )
        for namespace in namespaces:
            api.publish(namespace, "order-1", {"namespace": namespace})
        for namespace in namespaces:
            assert_each_delivery_succeeded_once(all_delivered(api, namespace, timeout=60))
        served = [set(shard.attempts_by_namespace()) for shard in shards]
        holders = [api.lease_holder(namespaces[0], f"ha-shards-shard-{i}") for i in (0, 1)]

    assert served[0].isdisjoint(served[1])
    assert served[0] | served[1] == set(namespaces)
    for index in (0, 1):
        assert served[index] == {ns for ns in namespaces if shard_of(ns, 2) == index}
    assert all(holders) and holders[0] != holders[1], holders
    for namespace in namespaces:
        assert len(requests_in(receiver, namespace)) == 1, namespace
