"""Operator processes against the real API server that KUBECONFIG points at, for the
high-availability scenarios (leader election, shards): what pods would run, on this machine.

Each process is `python -m webhook_operator run` with the given flags, its own metrics and
health ports and a log file; the tests read a process's role and deliveries from its
/metrics (`webhook_operator_leader`, `webhook_attempts_total`) and everything else from the
API server and a real receiver.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port
from tests.e2e.cluster import REPO, ClusterInfo, eventually, probe_cluster

GROUP, VERSION = "webhooks.openplatform.dev", "v1alpha1"
REQUIRE_CLUSTER = os.environ.get("E2E_REQUIRE_CLUSTER", "").lower() in ("1", "true", "yes")


def real_cluster() -> ClusterInfo:
    """The cluster of KUBECONFIG; skips without one, unless CI said it started one."""
    found = probe_cluster()
    if isinstance(found, str):
        if REQUIRE_CLUSTER:
            pytest.fail(f"E2E_REQUIRE_CLUSTER is set but {found}", pytrace=False)
        pytest.skip(found)
    return found


@dataclass
class Api:
    """The few API calls the scenarios make, through the official client."""

    api: client.ApiClient = field(default_factory=lambda: client.ApiClient(_configuration()))

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def create_namespace(self, name: str) -> None:
        client.CoreV1Api(self.api).create_namespace({"metadata": {"name": name}})

    def delete_namespace(self, name: str) -> None:
        for plural in ("webhookevents", "webhooksubscriptions"):
            with contextlib.suppress(client.ApiException):
                self.custom.delete_collection_namespaced_custom_object(GROUP, VERSION, name, plural)
        with contextlib.suppress(client.ApiException):
            client.CoreV1Api(self.api).delete_namespace(name)

    def subscribe(self, namespace: str, name: str, url: str) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "WebhookSubscription",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"url": url, "retry": {"initialDelaySeconds": 1, "maxDelaySeconds": 2}},
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "webhooksubscriptions", body)

    def publish(self, namespace: str, name: str, data: dict[str, Any]) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "WebhookEvent",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"type": "order.created", "data": data},
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "webhookevents", body)

    def ready(self, namespace: str, name: str) -> bool:
        found = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "webhooksubscriptions", name
        )
        conditions = (found.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def events(self, namespace: str) -> list[dict[str, Any]]:
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "webhookevents")
        return list(listed["items"])

    def lease_holder(self, namespace: str, name: str) -> str:
        try:
            lease = client.CoordinationV1Api(self.api).read_namespaced_lease(name, namespace)
        except client.ApiException:
            return ""
        return str(lease.spec.holder_identity or "")


def _configuration() -> client.Configuration:
    configuration = client.Configuration()
    config.load_kube_config(client_configuration=configuration)
    configuration.retries = 0
    configuration.connection_pool_maxsize = 32  # publishers in several threads
    return configuration


def delivered(event: dict[str, Any]) -> bool:
    conditions = (event.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Delivered" and c.get("status") == "True" for c in conditions)


class Operator:
    """One operator process; `role()` and `attempts()` come from its own /metrics."""

    def __init__(self, name: str, workdir: Path, *args: str) -> None:
        self.name = name
        self.metrics_port, self.health_port = free_port(), free_port()
        self.log_path = workdir / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if k != "WEBHOOK_OPERATOR_ALLOW_CIDRS"}
        env["PYTHONUNBUFFERED"] = "1"
        command = [
            sys.executable, "-m", "webhook_operator", "run", "--allow-cidr", "127.0.0.0/8",
            "--metrics-port", str(self.metrics_port), "--health-port", str(self.health_port), *args,
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)

    def metrics(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """Sample name -> (labels, value) of each sample; empty when the process does not answer."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                text = answer.read().decode()
        except (urllib.error.URLError, OSError):
            return {}
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((sample.labels, sample.value))
        return samples

    def leading(self) -> bool:
        return any(value == 1 for _, value in self.metrics().get("webhook_operator_leader", []))

    def standing_by(self) -> bool:
        return any(value == 0 for _, value in self.metrics().get("webhook_operator_leader", []))

    def attempts_by_namespace(self) -> dict[str, float]:
        counts: dict[str, float] = {}
        for labels, value in self.metrics().get("webhook_attempts_total", []):
            if labels.get("namespace"):
                counts[labels["namespace"]] = counts.get(labels["namespace"], 0) + value
        return counts

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def logs(self, lines: int = 80) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


class Publisher:
    """Creates events `<prefix>-<n>` every `interval` seconds in a thread, until stopped.

    A create that fails (the API server restarting) is not retried: the API server's list of
    events, not this count, is what every event must be delivered for.
    """

    def __init__(self, api: Api, namespace: str, prefix: str, interval: float) -> None:
        self._api, self._namespace, self._prefix, self._interval = api, namespace, prefix, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self.sent = 0
        self.failed = 0

    def __enter__(self) -> Publisher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self._interval):
            n += 1
            try:
                self._api.publish(self._namespace, f"{self._prefix}-{n}", {"n": n})
                self.sent += 1
            except Exception:  # the API server is down: the next one may go through
                self.failed += 1


def restartable_apiserver() -> tuple[Path, list[str]] | None:
    """The kube-apiserver serving KUBECONFIG, when it is a local instance of the kube-apiserver
    kit (state dir = the kubeconfig's directory, with run/kube-apiserver.pid): its state dir
    and command line. None for any other cluster."""
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        return None
    state = Path(kubeconfig).resolve().parent
    try:
        pid = int((state / "run" / "kube-apiserver.pid").read_text().strip())
        argv = [part.decode() for part in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if part]
    except (OSError, ValueError):
        return None
    if not argv or Path(argv[0]).resolve() != (state / "bin" / "kube-apiserver").resolve():
        return None
    return state, argv


def restart_apiserver(state: Path, argv: list[str]) -> float:
    """Stop the kube-apiserver and start it again with the same command line (etcd and its data
    untouched); returns the seconds it was unavailable. SIGTERM first, as the kit's stop.sh
    does; the server's graceful termination waits for its watches to end (30 s and more), so
    after 3 s it is killed, as a crashed or evicted API server would be."""
    pid_file = state / "run" / "kube-apiserver.pid"
    pid = int(pid_file.read_text().strip())
    port = int(next(a.split("=", 1)[1] for a in argv if a.startswith("--secure-port=")))
    down = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(AssertionError):
        eventually(lambda: not _alive(pid), timeout=3, what="the kube-apiserver to exit", interval=0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    eventually(lambda: not _alive(pid), timeout=10, what="the kube-apiserver to exit", interval=0.1)
    eventually(lambda: not _listening(port), timeout=10, what=f"port {port} to be free", interval=0.1)
    with (state / "logs" / "kube-apiserver.log").open("ab") as log:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    pid_file.write_text(f"{process.pid}\n")

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(
                f"the restarted kube-apiserver exited with {process.returncode}: see its log"
            )
        answer = subprocess.run(
            ["kubectl", "get", "--raw", "/readyz"], capture_output=True, text=True, timeout=10
        )
        return answer.returncode == 0 and answer.stdout.strip() == "ok"

    eventually(ready, timeout=120, what="the restarted kube-apiserver to be ready", interval=0.25)
    return time.monotonic() - down


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    """Running: a zombie (a restarted server is our child until reaped) counts as gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@contextlib.contextmanager
def operators(workdir: Path) -> Iterator[Callable[..., Operator]]:
    """Start operators with `start(name, *flags)`; all are stopped at the end, logs kept."""
    started: list[Operator] = []

    def start(name: str, *args: str) -> Operator:
        operator = Operator(name, workdir, *args)
        started.append(operator)
        return operator

    try:
        yield start
    except BaseException:
        for operator in started:
            sys.stderr.write(f"\n----- {operator.name} log -----\n{operator.logs()}\n")
        raise
    finally:
        for operator in started:
            operator.stop()


def receipts_by_id(requests: list[Any]) -> dict[str, list[float]]:
    """webhook-id -> the wall-clock times the receiver got it."""
    found: dict[str, list[float]] = {}
    for request in requests:
        found.setdefault(request.headers["webhook-id"], []).append(request.at)
    return found


def dumps(value: Any) -> str:
    return json.dumps(value, indent=1, default=str)[:4000]
