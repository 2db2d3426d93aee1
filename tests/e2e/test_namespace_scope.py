"""`--namespace` patterns on a real API server: one scope for kopf's watches and the engine's.

Each test runs an operator of its own (as deploy/'s ServiceAccount) whose patterns match none of
the session operator's namespaces, so the two never serve the same objects.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.cluster import REPO, Kubectl, eventually
from tests.e2e.conftest import (
    IN_CLUSTER,
    Namespaces,
    deploy_rbac,
    service_account_kubeconfig,
    start_local_operator,
    token_kubeconfig,
)
from tests.e2e.receiver import LocalReceiver, ReceiverView, wait_for_requests
from tests.e2e.test_delivery import event, subscription

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(300),
    pytest.mark.skipif(IN_CLUSTER, reason="starts operators of its own on this machine"),
]


def subscribe(kubectl: Kubectl, receiver: LocalReceiver, namespace: str) -> ReceiverView:
    view = ReceiverView(receiver, prefix=namespace)
    kubectl.apply([subscription(namespace, "all", url=view.url("/hooks"))])
    return view


def publish(kubectl: Kubectl, namespace: str, name: str) -> None:
    kubectl.apply([event(namespace, name, "order.created", {"namespace": namespace})])


def test_a_pattern_with_an_exclusion_serves_existing_and_new_namespaces_and_nothing_else(
    kubectl: Kubectl,
    own_namespaces: Namespaces,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    receiver: LocalReceiver = request.getfixturevalue("_local_receiver")
    team_a, skipped, other = (own_namespaces.create(s) for s in ("team-a", "team-skip1", "other"))
    views = {ns: subscribe(kubectl, receiver, ns) for ns in (team_a, skipped, other)}
    pattern = f"{own_namespaces.name('team-*')},!{own_namespaces.name('team-skip*')}"
    operator = start_local_operator(
        ["--namespace", pattern],
        tmp_path / "operator.log",
        kubeconfig=service_account_kubeconfig(kubectl, tmp_path),
    )
    try:
        team_b = own_namespaces.create("team-b")  # after start: served as it appears
        views[team_b] = subscribe(kubectl, receiver, team_b)
        kubectl.wait("--for=condition=Ready", "whsub/all", "-n", team_b, timeout=60)
        for ns in (team_a, team_b, skipped, other):
            publish(kubectl, ns, "first")

        for served in (team_a, team_b):
            kubectl.wait("--for=condition=Delivered", "whev/first", "-n", served, timeout=60)
            (request,) = wait_for_requests(views[served], "/hooks", 1)
            assert request.json()["data"] == {"namespace": served}

        time.sleep(3)  # the served events were delivered: the others had every chance too
        for unserved in (skipped, other):
            assert views[unserved].requests() == []
            untouched = kubectl.json("whev/first", "-n", unserved)
            assert "status" not in untouched, f"an event in {unserved} got a status: {untouched['status']}"
            assert "status" not in kubectl.json("whsub/all", "-n", unserved)

        # A namespace deleted while served stops being served; made again, it is served again.
        own_namespaces.remove(team_b)
        eventually(
            lambda: f"no longer served namespace={team_b}" in operator.logs(),
            timeout=30,
            what=f"the operator to let go of {team_b}",
        )
        own_namespaces.create("team-b")
        subscribe(kubectl, receiver, team_b)
        kubectl.wait("--for=condition=Ready", "whsub/all", "-n", team_b, timeout=60)
        publish(kubectl, team_b, "second")
        kubectl.wait("--for=condition=Delivered", "whev/second", "-n", team_b, timeout=60)
        assert operator.process.poll() is None
    finally:
        operator.stop()


def test_a_pattern_without_permission_to_watch_namespaces_is_refused_at_start_naming_it(
    kubectl: Kubectl, own_namespaces: Namespaces, tmp_path: Path
) -> None:
    """An account with the operator's object rights but not deploy/'s namespace discovery."""
    home = own_namespaces.create("account")
    kubectl.apply(
        [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "narrow", "namespace": home}},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "narrow", "namespace": home},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "webhook-operator",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "narrow", "namespace": home}],
            },
        ]
    )
    kubectl.apply(deploy_rbac())  # the ClusterRole the binding names
    config = token_kubeconfig(kubectl, home, "narrow", tmp_path)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "webhook_operator", "run", "--namespace", f"{home}-*"],
        env={"KUBECONFIG": str(config), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "may not list or watch namespaces" in result.stderr
    assert f"{home}-*" in result.stderr
    assert time.monotonic() - started < 30


def test_a_pattern_that_can_never_match_is_refused_before_anything_starts() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "webhook_operator", "run", "--namespace", "Team-*"],
        capture_output=True, text=True, timeout=30, cwd=REPO, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "'Team-*' can never match a namespace name" in result.stderr
