"""Leader election as deploy/ installs it: its own ServiceAccount and Role are enough to take,
renew and release the operator's Lease, and allow no other Lease.

The failover scenarios (two replicas, kill -9, SIGTERM, API server restart, shards) are in
tests/faults/test_leader_election.py; this checks the permissions a user's install grants.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.cluster import Kubectl, eventually
from tests.e2e.conftest import (
    IN_CLUSTER,
    Namespaces,
    service_account_kubeconfig,
    start_local_operator,
)
from tests.e2e.receiver import ReceiverView, wait_for_requests
from tests.e2e.test_delivery import event, subscription

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

LEASE_NAMESPACE, LEASE = "webhook-operator", "webhook-operator"  # deploy/base's
ACCOUNT = "system:serviceaccount:webhook-operator:webhook-operator"


def holder(kubectl: Kubectl) -> str:
    found = kubectl("get", "lease", LEASE, "-n", LEASE_NAMESPACE, "-o", "json", check=False)
    if found.returncode != 0:
        return ""
    return str(kubectl.json("lease", LEASE, "-n", LEASE_NAMESPACE)["spec"].get("holderIdentity") or "")


def can(kubectl: Kubectl, verb: str, resource: str, namespace: str) -> bool:
    answer = kubectl("auth", "can-i", verb, resource, "-n", namespace, f"--as={ACCOUNT}", check=False)
    return answer.stdout.strip() == "yes"


@pytest.mark.skipif(IN_CLUSTER, reason="runs an operator of its own on this machine")
def test_deploys_account_takes_and_releases_its_lease_and_may_touch_no_other(
    kubectl: Kubectl, own_namespaces: Namespaces, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    namespace = own_namespaces.create("lease")
    receiver = ReceiverView(request.getfixturevalue("_local_receiver"), prefix=namespace)
    kubectl.apply([subscription(namespace, "orders", url=receiver.url("/orders"))])
    account = service_account_kubeconfig(kubectl, tmp_path)
    args = ["--namespace", namespace, "--leader-elect", "--leader-election-namespace", LEASE_NAMESPACE]
    operator = start_local_operator(args, tmp_path / "operator.log", kubeconfig=account)
    try:
        # A Lease left by an earlier, killed run expires within its 15 s.
        acquired = eventually(
            lambda: re.search(r"acquired the lease .*identity=(\S+)", operator.logs()),
            timeout=45,
            interval=0.5,
            what="the operator to acquire the Lease with deploy/'s account",
        )
        assert holder(kubectl) == acquired.group(1)
        kubectl.apply([event(namespace, "order-1", "order.created", {"orderId": 1})])
        kubectl.wait("--for=condition=Delivered", "whev/order-1", "-n", namespace, timeout=60)
        assert len(wait_for_requests(receiver, "/orders", 1)) == 1
    finally:
        operator.stop()
    assert operator.process.returncode == 0
    assert holder(kubectl) == "", "a stopped leader releases the Lease"

    assert can(kubectl, "patch", f"leases/{LEASE}", LEASE_NAMESPACE)
    assert can(kubectl, "watch", f"leases/{LEASE}", LEASE_NAMESPACE)
    assert not can(kubectl, "patch", "leases/another-controller", LEASE_NAMESPACE)
    assert not can(kubectl, "create", "leases", "default")
    assert not can(kubectl, "delete", f"leases/{LEASE}", LEASE_NAMESPACE)
