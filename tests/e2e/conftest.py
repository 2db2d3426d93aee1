"""The end-to-end tier: the real operator against the real cluster that KUBECONFIG points at.

Run it with `pytest tests/e2e -m e2e` (`make e2e`). Without a cluster every test is skipped with
the reason; `make e2e-kind` makes a throwaway kind cluster where Docker exists.

Two ways to run, chosen by the environment:

- default, the operator on this machine: the session starts `python -m webhook_operator run`
  against the same kubeconfig, restricted to this session's namespaces (`--namespace
  e2e-whop-<session>-*`, so it never touches anything else on a shared cluster) and allowed to
  deliver to loopback (`--allow-cidr 127.0.0.0/8`), where an aiohttp receiver in the test
  process listens. A webhook-operator already deployed in the cluster would race it for the
  same events, so the session refuses to start one then (use E2E_IN_CLUSTER=1, or scale it down).
- `E2E_IN_CLUSTER=1`: the operator is already deployed (deploy/base) in E2E_OPERATOR_NAMESPACE
  (default webhook-operator, Deployment E2E_OPERATOR_DEPLOYMENT, default webhook-operator) and
  none is started. Receivers are Pods behind Services in each test's namespace, reached at
  http://e2e-receiver.<ns>.svc:8080. E2E_ALLOW_CIDRS (comma-separated) names the ranges the
  deployed operator may deliver to; a receiver Service outside them fails the test at once
  instead of timing out. An unreachable cluster is an error in this mode, not a skip: it
  asked for a cluster.

Either way the session applies crds/ first, every test gets fresh namespaces (deleted without
waiting, after their WebhookEvents and WebhookSubscriptions), and a failed test's report ends
with the resources of its namespaces and the operator's recent log.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import free_port
from tests.e2e.cluster import (
    CRDS,
    GROUP,
    REPO,
    ClusterInfo,
    Kubectl,
    KubectlError,
    crd_names,
    eventually,
    example_documents,
    json_stream,
    probe_cluster,
)
from tests.e2e.receiver import (
    RECEIVER_NAME,
    LocalReceiver,
    PodReceiver,
    Receiver,
    ReceiverView,
    receiver_manifests,
)

IN_CLUSTER = os.environ.get("E2E_IN_CLUSTER", "").lower() in ("1", "true", "yes")
# Set by .ci/run when it started a real API server: then no e2e test may skip.
REQUIRE_CLUSTER = IN_CLUSTER or os.environ.get("E2E_REQUIRE_CLUSTER", "").lower() in ("1", "true", "yes")
OPERATOR_NAMESPACE = os.environ.get("E2E_OPERATOR_NAMESPACE") or "webhook-operator"
OPERATOR_DEPLOYMENT = os.environ.get("E2E_OPERATOR_DEPLOYMENT") or "webhook-operator"
ALLOW_CIDRS = [c.strip() for c in os.environ.get("E2E_ALLOW_CIDRS", "").split(",") if c.strip()]

NAMESPACE_PREFIX = "e2e-whop"
SESSION_LABEL = "e2e.webhook-operator/session"
CUSTOM_RESOURCES = f"webhookevents.{GROUP},webhooksubscriptions.{GROUP}"

Diagnostic = tuple[str, Callable[[], str]]
DIAGNOSTICS = pytest.StashKey[list[Diagnostic]]()


def add_diagnostic(node: pytest.Item, title: str, collect: Callable[[], str]) -> None:
    """Have `collect()` appended to the report of `node` if its test fails."""
    node.stash.setdefault(DIAGNOSTICS, []).append((title, collect))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.skipped and REQUIRE_CLUSTER:
        # A skip here would let CI pass without the tier having run.
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"an e2e test skipped although E2E_REQUIRE_CLUSTER is set: {reason}"
    if report.when == "call" and report.failed:
        for title, collect in item.stash.get(DIAGNOSTICS, []):
            try:
                text = collect()
            except Exception as error:
                text = f"(could not collect: {error!r})"
            report.sections.append((f"e2e: {title}", text))
    return report


# --- the cluster --------------------------------------------------------------------------------


def _no_cluster(reason: str) -> None:
    if REQUIRE_CLUSTER:
        pytest.fail(
            f"a cluster is required (E2E_IN_CLUSTER or E2E_REQUIRE_CLUSTER) but {reason}", pytrace=False
        )
    pytest.skip(reason)


@pytest.fixture(scope="session")
def cluster() -> ClusterInfo:
    if shutil.which(os.environ.get("KUBECTL", "kubectl")) is None:
        _no_cluster("kubectl is not on PATH: the e2e tier drives the cluster with it")
    found = probe_cluster()
    if isinstance(found, str):
        _no_cluster(found)
    assert isinstance(found, ClusterInfo)
    return found


@pytest.fixture(scope="session")
def kubectl(cluster: ClusterInfo, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    binary = shutil.which(os.environ.get("KUBECTL", "kubectl"))
    assert binary is not None
    return Kubectl(binary=binary, cache_dir=tmp_path_factory.mktemp("kubectl-cache"))


@pytest.fixture(scope="session")
def crds(kubectl: Kubectl) -> list[str]:
    """crds/ applied and Established, with a fresh discovery cache that knows them."""
    # Server-side apply, as a GitOps tool applies them: the API server merges and owns the fields.
    kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=e2e", "-f", str(CRDS))
    names = crd_names()  # <plural>.<group>, as `kubectl api-resources -o name` prints them
    kubectl.wait("--for=condition=Established", *(f"crd/{name}" for name in names), timeout=60)
    # Discovery lists a new CRD a moment after it is Established. kubectl caches discovery, and
    # a cache without our resources would break short names and `kubectl get webhooks` (a
    # category). api-resources reads discovery afresh and writes the cache it then holds.
    kubectl.forget_discovery()
    eventually(
        lambda: (
            set(names) <= set(kubectl("api-resources", f"--api-group={GROUP}", "-o", "name").stdout.split())
        ),
        timeout=60,
        interval=0.5,
        what=f"the API server's discovery to list {', '.join(names)}",
    )
    return names


@pytest.fixture(autouse=True)
def _cluster_with_crds(crds: list[str]) -> None:
    """Every e2e test needs the cluster and our CRDs: without a cluster this skips them all."""


@pytest.fixture(scope="session")
def session_id() -> str:
    return secrets.token_hex(3)


# --- the operator -------------------------------------------------------------------------------


@dataclass
class LocalOperator:
    """`python -m webhook_operator run` in a subprocess, its output in `log_path`."""

    process: subprocess.Popen[bytes]
    log_path: Path
    health_port: int

    def logs(self, lines: int = 200) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@dataclass
class DeployedOperator:
    kubectl: Kubectl
    namespace: str
    deployment: str

    def logs(self, lines: int = 200) -> str:
        result = self.kubectl(
            "logs", "-n", self.namespace, f"deployment/{self.deployment}", f"--tail={lines}", check=False
        )
        return result.stdout + result.stderr


Operator = LocalOperator | DeployedOperator


def _deployed_operators(kubectl: Kubectl) -> list[str]:
    """Running webhook-operator Deployments anywhere in the cluster (empty when we may not list)."""
    result = kubectl(
        "get", "deployments", "-A", "-l", "app.kubernetes.io/name=webhook-operator", "-o", "json", check=False
    )
    if result.returncode != 0:
        return []
    return [
        f"{item['metadata']['namespace']}/{item['metadata']['name']}"
        for item in json.loads(result.stdout).get("items", [])
        if (item.get("status", {}).get("readyReplicas") or 0) > 0
    ]


@pytest.fixture(scope="session")
def _operator_session(
    kubectl: Kubectl, crds: list[str], session_id: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    if IN_CLUSTER:
        try:
            kubectl(
                "rollout", "status", "-n", OPERATOR_NAMESPACE, f"deployment/{OPERATOR_DEPLOYMENT}",
                "--timeout=180s", timeout=210,
            )  # fmt: skip
        except KubectlError as error:
            pytest.fail(
                f"E2E_IN_CLUSTER=1 but deployment/{OPERATOR_DEPLOYMENT} in namespace {OPERATOR_NAMESPACE} "
                f"is not rolled out (deploy it with `kubectl apply -k deploy/base`):\n{error}",
                pytrace=False,
            )
        yield DeployedOperator(kubectl, OPERATOR_NAMESPACE, OPERATOR_DEPLOYMENT)
        return

    deployed = _deployed_operators(kubectl)
    if deployed:
        pytest.fail(
            f"webhook-operator is already running in this cluster ({', '.join(deployed)}): it would "
            "deliver the test events too. Run with E2E_IN_CLUSTER=1 to test it, or scale it to 0.",
            pytrace=False,
        )
    kubeconfig = service_account_kubeconfig(kubectl, tmp_path_factory.mktemp("operator-account"))
    operator = start_local_operator(
        ["--namespace", f"{NAMESPACE_PREFIX}-{session_id}-*"],
        tmp_path_factory.mktemp("operator") / "operator.log",
        kubeconfig=kubeconfig,
    )
    try:
        yield operator
    finally:
        operator.stop()


def start_local_operator(
    args: list[str], log_path: Path, *, kubeconfig: Path | None = None, healthy_within: float = 60.0
) -> LocalOperator:
    """`python -m webhook_operator run ARGS` (loopback allowed), once its /healthz answers.

    `kubeconfig`: the account it runs as (default: the tests' own, KUBECONFIG). Fails the test
    with the operator's log when it exits or never gets healthy.
    """
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("WEBHOOK_OPERATOR_ALLOW_CIDRS", None)
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    command = [
        sys.executable, "-m", "webhook_operator", "run", *args,
        "--allow-cidr", "127.0.0.0/8",
        "--health-port", str(port),
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    operator = LocalOperator(process, log_path, port)
    deadline = time.monotonic() + healthy_within
    while not operator.healthy():
        if process.poll() is not None:
            pytest.fail(f"the operator exited with {process.returncode}:\n{operator.logs()}", pytrace=False)
        if time.monotonic() > deadline:
            operator.stop()
            pytest.fail(
                f"the operator's /healthz did not answer within {healthy_within:.0f} s:\n{operator.logs()}",
                pytrace=False,
            )
        time.sleep(0.5)
    return operator


# --- the operator's account: exactly the RBAC of deploy/ -----------------------------------------

RBAC_KINDS = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def deploy_rbac() -> list[dict[str, Any]]:
    """The account objects of `kubectl kustomize deploy/base`: what a user's install grants."""
    rendered = subprocess.run(
        [shutil.which(os.environ.get("KUBECTL", "kubectl")) or "kubectl", "kustomize", str(REPO / "deploy" / "base")],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] in RBAC_KINDS]


def token_kubeconfig(kubectl: Kubectl, namespace: str, account: str, directory: Path) -> Path:
    """A kubeconfig for the current cluster that authenticates as a ServiceAccount's token
    (TokenRequest API, `kubectl create token`), as the operator's pod would."""
    token = kubectl("create", "token", account, "-n", namespace, "--duration=3h").stdout.strip()
    current = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    cluster = current["clusters"][0]["cluster"]
    path = directory / f"{namespace}-{account}.kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "e2e", "cluster": cluster}],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": account}}],
                "current-context": "e2e",
            }
        ),
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


def service_account_kubeconfig(kubectl: Kubectl, directory: Path) -> Path:
    """deploy/base's ServiceAccount and roles applied; a kubeconfig with that account's token."""
    objects = deploy_rbac()
    kubectl.apply(objects)
    (account,) = [obj["metadata"] for obj in objects if obj["kind"] == "ServiceAccount"]
    return token_kubeconfig(kubectl, account["namespace"], account["name"], directory)


@pytest.fixture
def operator(_operator_session: Operator, request: pytest.FixtureRequest) -> Operator:
    """The running operator (local or deployed); a failing test's report gets its recent log."""
    add_diagnostic(request.node, "operator log (last 200 lines)", _operator_session.logs)
    return _operator_session


# --- namespaces ---------------------------------------------------------------------------------


def _delete_namespace(kubectl: Kubectl, namespace: str) -> None:
    """Delete without waiting; our objects first, stripped of finalizers, so nothing holds it up."""
    kubectl(
        "delete", CUSTOM_RESOURCES, "--all", "-n", namespace, "--wait=false", "--ignore-not-found",
        check=False, timeout=60,
    )  # fmt: skip
    listed = kubectl("get", CUSTOM_RESOURCES, "-n", namespace, "-o", "json", check=False, timeout=60)
    if listed.returncode == 0:
        for item in json.loads(listed.stdout).get("items", []):
            if item["metadata"].get("finalizers"):
                kind = f"{item['kind'].lower()}.{GROUP}"
                kubectl(
                    "patch", kind, item["metadata"]["name"], "-n", namespace, "--type=merge",
                    "-p", '{"metadata":{"finalizers":null}}', check=False, timeout=60,
                )  # fmt: skip
    kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False, timeout=60)


@pytest.fixture(scope="session")
def _namespace_sweep(kubectl: Kubectl, session_id: str) -> Iterator[None]:
    """At the end of the session, any namespace of ours that a teardown missed."""
    yield
    kubectl(
        "delete", "namespace", "-l", f"{SESSION_LABEL}={session_id}", "--wait=false", "--ignore-not-found",
        check=False, timeout=60,
    )  # fmt: skip


@pytest.fixture
def new_namespace(
    kubectl: Kubectl, session_id: str, request: pytest.FixtureRequest, _namespace_sweep: None
) -> Iterator[Callable[[], str]]:
    """Make fresh namespaces (`e2e-whop-<session>-<random>`); all are deleted after the test."""
    created: list[str] = []

    def make() -> str:
        name = f"{NAMESPACE_PREFIX}-{session_id}-{secrets.token_hex(3)}"
        manifest = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {SESSION_LABEL: session_id}},
        }
        kubectl("create", "-f", "-", input=json_stream([manifest]))
        created.append(name)
        add_diagnostic(
            request.node,
            f"webhooks in {name}",
            lambda: kubectl("get", CUSTOM_RESOURCES, "-n", name, "-o", "yaml", check=False).stdout,
        )
        return name

    yield make
    for name in created:
        _delete_namespace(kubectl, name)


class Namespaces:
    """Namespaces `e2e-own-<run>-<suffix>`, outside the session operator's pattern: for tests
    that run an operator of their own (`start_local_operator`)."""

    def __init__(self, kubectl: Kubectl, session_id: str) -> None:
        self.kubectl = kubectl
        self.session_id = session_id
        self.prefix = f"e2e-own-{secrets.token_hex(3)}"
        self.created: list[str] = []

    def name(self, suffix: str) -> str:
        return f"{self.prefix}-{suffix}"

    def create(self, suffix: str) -> str:
        name = self.name(suffix)
        manifest = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {SESSION_LABEL: self.session_id}},
        }
        self.kubectl("create", "-f", "-", input=json_stream([manifest]))
        self.created.append(name)
        return name

    def remove(self, name: str) -> None:
        """Delete it for good: the kit has no namespace controller, so finalize it ourselves."""
        _delete_namespace(self.kubectl, name)
        finalized = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name},
            "spec": {"finalizers": []},
        }
        self.kubectl(
            "replace",
            "--raw",
            f"/api/v1/namespaces/{name}/finalize",
            "-f",
            "-",
            input=json_stream([finalized]),
        )
        eventually(
            lambda: self.kubectl("get", "namespace", name, check=False).returncode != 0,
            timeout=30,
            what=f"namespace {name} to be gone",
        )


@pytest.fixture
def namespaces(kubectl: Kubectl, session_id: str) -> Iterator[Namespaces]:
    made = Namespaces(kubectl, session_id)
    yield made
    for name in made.created:
        _delete_namespace(kubectl, name)


@pytest.fixture
def own_namespaces(kubectl: Kubectl, session_id: str, _namespace_sweep: None) -> Iterator[Namespaces]:
    made = Namespaces(kubectl, session_id)
    yield made
    for name in made.created:
        _delete_namespace(kubectl, name)


@pytest.fixture
def namespace(new_namespace: Callable[[], str]) -> str:
    return new_namespace()


# --- receivers ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _local_receiver() -> Iterator[LocalReceiver]:
    server = LocalReceiver().start()
    yield server
    server.stop()


def _check_allowed(kubectl: Kubectl, namespace: str) -> None:
    if not ALLOW_CIDRS:
        return
    cluster_ip = kubectl.json("service", RECEIVER_NAME, "-n", namespace)["spec"]["clusterIP"]
    address = ipaddress.ip_address(cluster_ip)
    if not any(address in ipaddress.ip_network(cidr, strict=False) for cidr in ALLOW_CIDRS):
        pytest.fail(
            f"the receiver Service's address {cluster_ip} is outside E2E_ALLOW_CIDRS ({','.join(ALLOW_CIDRS)}): "
            "the operator's egress policy would refuse every delivery to it",
            pytrace=False,
        )


def deploy_pod_receiver(kubectl: Kubectl, namespace: str) -> PodReceiver:
    """The receiver Pod and Service in `namespace`, once the Pod is Ready and the Service routes to it."""
    # Pods are refused until the namespace's default ServiceAccount exists (made asynchronously).
    eventually(
        lambda: kubectl("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0,
        timeout=60,
        what=f"the default ServiceAccount of {namespace}",
    )
    kubectl.apply(receiver_manifests(namespace))
    try:
        kubectl.wait("--for=condition=Ready", f"pod/{RECEIVER_NAME}", "-n", namespace, timeout=240)
    except KubectlError as error:
        described = kubectl("describe", "pod", RECEIVER_NAME, "-n", namespace, check=False).stdout
        raise AssertionError(f"the receiver Pod did not become Ready:\n{error}\n{described}") from None

    def routed() -> bool:
        slices = kubectl.json(
            "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={RECEIVER_NAME}"
        )
        return any(
            (endpoint.get("conditions") or {}).get("ready")
            for item in slices.get("items", [])
            for endpoint in item.get("endpoints") or []
        )

    eventually(routed, timeout=60, what=f"a ready endpoint behind service/{RECEIVER_NAME}")
    _check_allowed(kubectl, namespace)
    return PodReceiver(
        namespace=namespace,
        read_log=lambda: kubectl("logs", "-n", namespace, f"pod/{RECEIVER_NAME}", "-c", "receiver").stdout,
    )


@pytest.fixture
def receiver(kubectl: Kubectl, namespace: str, request: pytest.FixtureRequest) -> Receiver:
    """A receiver the operator can reach; its requests are this test's only."""
    found: Receiver
    if IN_CLUSTER:
        found = deploy_pod_receiver(kubectl, namespace)
    else:
        found = ReceiverView(request.getfixturevalue("_local_receiver"), prefix=namespace)
    add_diagnostic(
        request.node,
        "requests the receiver got",
        lambda: "\n".join(f"{r.method} {r.path} -> {r.status}" for r in found.requests()) or "(none)",
    )
    return found


# --- examples/ ----------------------------------------------------------------------------------


def examples_for(namespace: str, receiver: Receiver) -> list[dict[str, Any]]:
    """examples/ as a user would adapt them: into `namespace`, subscription URLs at `receiver`.

    The Namespace object is left out (the test's namespace exists); each URL keeps its path and
    query, so `http://localhost:8000/hooks/orders` becomes `<receiver>/hooks/orders`.
    """
    documents = []
    for document in copy.deepcopy(example_documents()):
        if document["kind"] == "Namespace":
            continue
        document["metadata"]["namespace"] = namespace
        if document["kind"] == "WebhookSubscription":
            url = urlsplit(document["spec"]["url"])
            document["spec"]["url"] = receiver.url(url.path + (f"?{url.query}" if url.query else ""))
        documents.append(document)
    return documents
