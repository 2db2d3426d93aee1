"""Webhook receivers for the e2e tier, reachable from wherever the operator runs.

Both kinds record every request and answer by the same rule, written in the URL's query so a
subscription carries its own script: `?fail=N&status=CODE` makes the first N requests to that
path (and query) answer CODE (default 503), every later one 200. Without `fail`, always 200.

- `LocalReceiver`: aiohttp on 127.0.0.1 in a thread of the test process, for an operator that
  runs on this machine (`--allow-cidr 127.0.0.0/8`). One per session; each test gets a
  `ReceiverView` under its own path prefix so tests never see each other's requests.
- `PodReceiver`: a Pod (python:3.11-slim running `RECEIVER_SCRIPT`) and a Service in the test
  namespace, for an operator deployed in the cluster. It prints every request as one line
  `E2E-REQUEST <json>` on stdout; the test reads them back with `kubectl logs`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import aiohttp.web

RECEIVER_NAME = "e2e-receiver"
RECEIVER_PORT = 8080
RECEIVER_IMAGE = "python:3.11-slim"
LOG_PREFIX = "E2E-REQUEST "


def planned_status(path_qs: str, nth: int) -> int:
    """The answer to the `nth` (1-based) request to `path_qs`, by the `?fail=N&status=CODE` rule."""
    query = parse_qs(urlsplit(path_qs).query)
    fail = int(query.get("fail", ["0"])[0])
    status = int(query.get("status", ["503"])[0])
    return status if nth <= fail else 200


# The in-cluster receiver: the same rule as `planned_status`, standard library only, so the
# stock python image runs it with no install step. GET answers 200 (the readiness probe).
RECEIVER_SCRIPT = r"""
import base64, json, os, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

lock = threading.Lock()
seen = {}

def planned_status(path_qs, nth):
    query = parse_qs(urlsplit(path_qs).query)
    fail = int(query.get("fail", ["0"])[0])
    status = int(query.get("status", ["503"])[0])
    return status if nth <= fail else 200

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self):
        body = self.read_body()
        with lock:
            nth = seen[self.path] = seen.get(self.path, 0) + 1
        code = planned_status(self.path, nth)
        record = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": base64.b64encode(body).decode(),
            "status": code,
            "at": time.time(),
        }
        print("E2E-REQUEST " + json.dumps(record), flush=True)
        self.answer(code, b'{"ok": true}' if code < 300 else b'{"ok": false}')

    def do_GET(self):
        self.answer(200, b'{"ok": true}')

    def answer(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

port = int(os.environ.get("PORT", "8080"))
print("receiver listening on", port, flush=True)
ThreadingHTTPServer(("", port), Handler).serve_forever()
"""


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # path and query, relative to the receiver (view) the test asked for
    headers: dict[str, str]  # lower-case names
    body: bytes
    status: int  # what the receiver answered
    at: float  # wall-clock time.time() it arrived

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver(Protocol):
    def url(self, path: str) -> str: ...

    def requests(self, path: str | None = None) -> list[RecordedRequest]: ...


def wait_for_requests(
    receiver: Receiver, path: str, count: int, *, timeout: float = 60.0
) -> list[RecordedRequest]:
    """Wait until `path` got at least `count` requests; return them in arrival order."""
    deadline = time.monotonic() + timeout
    while True:
        got = receiver.requests(path)
        if len(got) >= count:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(
                f"receiver got {len(got)} request(s) at {path} within {timeout:.0f}s, expected {count}: "
                f"{[(r.path, r.status) for r in receiver.requests()]}"
            )
        time.sleep(0.5)


class LocalReceiver:
    """aiohttp on 127.0.0.1:<free port>, served from its own event loop in a daemon thread."""

    def __init__(self) -> None:
        self.base_url = ""
        self._records: list[RecordedRequest] = []
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="e2e-receiver", daemon=True)

    def start(self) -> LocalReceiver:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the local receiver did not start within 10 s")
        if self._error is not None:
            raise RuntimeError(f"the local receiver failed to start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # surfaced by start()
            self._error = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = aiohttp.web.Server(self._handle, access_log=None)
        runner = aiohttp.web.ServerRunner(server, shutdown_timeout=1)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    async def _handle(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        body = await request.read()
        if request.method == "GET":
            return aiohttp.web.json_response({"ok": True})
        with self._lock:
            self._counts[request.path_qs] += 1
            status = planned_status(request.path_qs, self._counts[request.path_qs])
            self._records.append(
                RecordedRequest(
                    method=request.method,
                    path=request.path_qs,
                    headers={k.lower(): v for k, v in request.headers.items()},
                    body=body,
                    status=status,
                    at=time.time(),
                )
            )
        return aiohttp.web.json_response({"ok": status < 300}, status=status)

    def records(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._records)


@dataclass(frozen=True)
class ReceiverView:
    """One test's share of the session's LocalReceiver: its requests live under `/<prefix>`."""

    server: LocalReceiver
    prefix: str

    def url(self, path: str) -> str:
        return f"{self.server.base_url}/{self.prefix}{path}"

    def requests(self, path: str | None = None) -> list[RecordedRequest]:
        mine = f"/{self.prefix}"
        found = []
        for record in self.server.records():
            if not record.path.startswith(mine + "/") and not record.path.startswith(mine + "?"):
                continue
            relative = record.path[len(mine) :]
            if path is None or relative == path:
                found.append(
                    RecordedRequest(
                        record.method, relative, record.headers, record.body, record.status, record.at
                    )
                )
        return found


def receiver_manifests(namespace: str) -> list[dict[str, Any]]:
    """A Pod running RECEIVER_SCRIPT and a Service in front of it, within restricted Pod Security."""
    labels = {"app.kubernetes.io/name": RECEIVER_NAME, "app.kubernetes.io/part-of": "webhook-operator-e2e"}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": RECEIVER_NAME, "namespace": namespace, "labels": labels},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65534,
                "runAsGroup": 65534,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "receiver",
                    "image": RECEIVER_IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "-u", "-c", RECEIVER_SCRIPT],
                    "env": [
                        {"name": "PORT", "value": str(RECEIVER_PORT)},
                        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
                    ],
                    "ports": [{"name": "http", "containerPort": RECEIVER_PORT, "protocol": "TCP"}],
                    "readinessProbe": {
                        "httpGet": {"path": "/healthz", "port": "http"},
                        "periodSeconds": 1,
                    },
                    "resources": {
                        "requests": {"cpu": "10m", "memory": "32Mi"},
                        "limits": {"cpu": "500m", "memory": "128Mi"},
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": RECEIVER_NAME, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": labels,
            "ports": [{"name": "http", "port": RECEIVER_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    return [pod, service]


def parse_receiver_log(text: str) -> list[RecordedRequest]:
    """The `E2E-REQUEST <json>` lines of the receiver Pod's log, in order; other lines are skipped."""
    records = []
    for line in text.splitlines():
        # `kubectl logs --timestamps` would prefix a time; find the marker wherever it is.
        start = line.find(LOG_PREFIX)
        if start < 0:
            continue
        raw = json.loads(line[start + len(LOG_PREFIX) :])
        records.append(
            RecordedRequest(
                method=raw["method"],
                path=raw["path"],
                headers=raw["headers"],
                body=base64.b64decode(raw["body"]),
                status=raw["status"],
                at=raw["at"],
            )
        )
    return records


@dataclass(frozen=True)
class PodReceiver:
    """The receiver Pod of one test namespace; `read_log` returns the Pod's current log."""

    namespace: str
    read_log: Callable[[], str]

    def url(self, path: str) -> str:
        return f"http://{RECEIVER_NAME}.{self.namespace}.svc:{RECEIVER_PORT}{path}"

    def requests(self, path: str | None = None) -> list[RecordedRequest]:
        return [r for r in parse_receiver_log(self.read_log()) if path is None or r.path == path]
