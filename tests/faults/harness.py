"""What the fault scenarios share: a receiver that misbehaves on demand, a stand-in that can hold
or lose status writes, a small client for the stand-in, and the per-scenario report.

The numbers every scenario reports (`Report`):
- events: WebhookEvents created; deliveries: (event, subscription) pairs expected to succeed;
- delivered: pairs a receiver acknowledged (answered 2xx) at least once;
- duplicated: acknowledgements beyond the first for a pair (what a receiver must deduplicate);
- lost: expected pairs never acknowledged (must be 0);
- recovery: seconds from the fault ending (or the operator being killed) to deliveries flowing.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import aiohttp
import aiohttp.web
import attrs

from webhook_operator.testing.api_standin import ApiStandin, serve
from webhook_operator.testing.api_standin_faults import Faults, status_response

NAMESPACE = "shop"
GROUP_VERSION = "webhooks.openplatform.dev/v1alpha1"


# -- the report --------------------------------------------------------------------------------


@dataclasses.dataclass
class Report:
    scenario: str
    events: int
    deliveries: int
    delivered: int
    duplicated: int
    lost: int
    recovery: float | None = None  # seconds
    recovery_of: str = ""  # what the recovery time measures
    notes: str = ""

    def line(self) -> str:
        recovery = f"{self.recovery:6.2f}s" if self.recovery is not None else "     - "
        return (
            f"{self.scenario:<44} events={self.events:<4} deliveries={self.deliveries:<4} "
            f"delivered={self.delivered:<4} duplicated={self.duplicated:<3} lost={self.lost:<2} "
            f"recovery={recovery} {self.recovery_of}{'  | ' + self.notes if self.notes else ''}"
        )


REPORTS: list[Report] = []


def publish(report: Report) -> Report:
    """Keep the report for the end-of-run summary (conftest prints it) and print it now."""
    REPORTS.append(report)
    print("\nFAULTS " + report.line())
    return report


# -- the receiver --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    delay: float = 0.0


@dataclasses.dataclass(frozen=True)
class Hang:
    """Never answer (until the receiver stops)."""


@dataclasses.dataclass(frozen=True)
class Reset:
    """Read the request, then reset the connection (TCP RST) without answering."""


Action = Reply | Hang | Reset


@dataclasses.dataclass(frozen=True)
class Request:
    path: str
    webhook_id: str
    nth: int  # 1 for the first request with this webhook-id on this path


Policy = Callable[[Request], Action]


@dataclasses.dataclass
class Hit:
    path: str
    webhook_id: str
    arrived: float  # time.monotonic()
    answered: float | None = None
    status: int | None = None  # None: no answer (hung, reset, or the receiver went away)


class FaultyReceiver:
    """A real HTTP receiver on 127.0.0.1 whose behaviour is set per path by a policy.

    It records every request (`hits`), counts the ones being handled (`in_progress`), can go
    away (`stop`: connection refused) and come back on the same port (`start`).
    """

    def __init__(self) -> None:
        self.port = 0
        self.hits: list[Hit] = []
        self.in_progress = 0
        self._policies: dict[str, Policy] = {}
        self._seen: collections.Counter[tuple[str, str]] = collections.Counter()
        self._runner: aiohttp.web.AppRunner | None = None
        self._arrived = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def endpoint(self, path: str) -> str:
        return self.url + path

    def on(self, path: str, policy: Policy | Action) -> None:
        self._policies[path] = policy if callable(policy) else (lambda _request: policy)

    async def start(self) -> None:
        app = aiohttp.web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # As most receiver apps, a request is processed to the end even if the client goes away
        # (the operator crashed mid-delivery): the worst case for duplicates.
        runner = aiohttp.web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = runner.addresses[0][1]
        self._runner = runner

    async def stop(self) -> None:
        """Go away: open connections are dropped, new ones refused."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- what was received ----------------------------------------------------------------------

    def acks(self, path: str | None = None) -> collections.Counter[tuple[str, str]]:
        """2xx answers per (path, webhook-id)."""
        return collections.Counter(
            (hit.path, hit.webhook_id)
            for hit in self.hits
            if hit.status is not None and 200 <= hit.status < 300 and path in (None, hit.path)
        )

    def requests(self, path: str | None = None) -> collections.Counter[tuple[str, str]]:
        """Requests per (path, webhook-id), whatever the answer."""
        return collections.Counter(
            (hit.path, hit.webhook_id) for hit in self.hits if path in (None, hit.path)
        )

    def arrivals_after(self, moment: float, path: str | None = None) -> list[Hit]:
        return [hit for hit in self.hits if hit.arrived > moment and path in (None, hit.path)]

    async def wait_arrival_after(self, moment: float, timeout: float, path: str | None = None) -> float:
        """The arrival time of the first request after `moment` (waits for one)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = self.arrivals_after(moment, path)
            if hits:
                return min(hit.arrived for hit in hits)
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), 0.05)
        raise AssertionError(f"no request arrived within {timeout}s")

    # -- serving ------------------------------------------------------------------------------------

    async def _handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        await request.read()
        webhook_id = request.headers.get("webhook-id") or request.headers.get("ce-id") or ""
        hit = Hit(request.path, webhook_id, time.monotonic())
        self.hits.append(hit)
        self._arrived.set()
        self._seen[(request.path, webhook_id)] += 1
        policy = self._policies.get(request.path)
        action = (
            policy(Request(request.path, webhook_id, self._seen[(request.path, webhook_id)]))
            if policy
            else Reply()
        )
        self.in_progress += 1
        try:
            if isinstance(action, Hang):
                await asyncio.sleep(3600)
            if isinstance(action, Reset):
                _reset(request)
                hit.answered = time.monotonic()
                return aiohttp.web.Response(status=500)  # never sent: the connection is gone
            assert isinstance(action, Reply)
            if action.delay:
                await asyncio.sleep(action.delay)
            hit.answered, hit.status = time.monotonic(), action.status
            return aiohttp.web.Response(status=action.status, headers=dict(action.headers), text="ok")
        finally:
            self.in_progress -= 1


def _reset(request: aiohttp.web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:  # linger 0: close() sends RST instead of FIN
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


@contextlib.asynccontextmanager
async def serve_receiver() -> AsyncIterator[FaultyReceiver]:
    receiver = FaultyReceiver()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


# -- the stand-in, with status writes that can be held or lose their answer ------------------------


class WriteGate:
    """Hold the next status write of a WebhookEvent, before or after the stand-in applies it.

    `arm("before")`: the write waits before it is applied; if the operator dies meanwhile (the
    connection closes, the server cancels the handler), it is never applied. `arm("after")`: it
    is applied, then its answer waits; the operator dies without knowing it succeeded.
    """

    def __init__(self) -> None:
        self.mode: str | None = None
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    def arm(self, mode: str) -> None:
        assert mode in ("before", "after")
        self.mode = mode
        self.held.clear()
        self.release.clear()

    def open(self) -> None:
        self.mode = None
        self.release.set()

    async def pass_through(self, mode: str) -> None:
        if self.mode != mode:
            return
        self.mode = None  # one write per arming
        self.held.set()
        await self.release.wait()


class RealisticFaults(Faults):
    """Injected 422s read as kube-apiserver words a failed JSON-patch `test` (a lost race on the
    resourceVersion), which is the only 422 an optimistic-concurrency client should retry."""

    def response(self, code: int, what: str) -> aiohttp.web.Response:
        if code == 422:
            return status_response(
                422,
                "the server rejected our request due to an error in our request: testing value "
                "/metadata/resourceVersion failed: test failed (injected fault)",
                reason="Invalid",
            )
        return super().response(code, what)


@attrs.define(kw_only=True)
class FaultyStandin(ApiStandin):
    """The API stand-in plus faults only a server-side hook can make.

    - `gate`: hold one WebhookEvent status write before or after it is applied (a kill lands
      mid-status-write);
    - `read_faults`: like `faults`, for GETs (`faults` is kept for writes: a real server answers
      a GET with 429 or 5xx, never with a conflict);
    - `lose_replies(share)`: apply a share of status writes, then answer 500 or drop the
      connection, so the operator cannot know the write took effect and sends it again.
    """

    faults: Faults = attrs.field(factory=RealisticFaults, init=False)
    read_faults: Faults = attrs.field(factory=RealisticFaults, init=False)  # GETs only, not watches
    gate: WriteGate = attrs.field(factory=WriteGate, init=False)
    lost_share: float = attrs.field(default=0.0, init=False)
    lost: collections.Counter[str] = attrs.field(factory=collections.Counter, init=False)
    _lost_turn: int = attrs.field(default=0, init=False)

    def lose_replies(self, share: float) -> None:
        self.lost_share = share

    async def _answer(self, raw: aiohttp.web.BaseRequest, target: Any) -> aiohttp.web.StreamResponse:
        status_write = (
            target.verb == "patch" and target.subresource == "status" and target.plural == "webhookevents"
        )
        if raw.method == "GET" and target.verb != "watch":
            code = self.read_faults.draw("GET", target.plural, target.subresource or "", watch=False)
            if code is not None:
                return self.read_faults.response(code, f'{target.plural} "{target.name}"')
        if not status_write:
            return await super()._answer(raw, target)
        await self.gate.pass_through("before")
        response = await super()._answer(raw, target)
        await self.gate.pass_through("after")
        if self.lost_share and response.status < 300:
            self._lost_turn += 1
            # Deterministic: every n-th applied write loses its answer, alternating 500 and a drop.
            every = max(1, round(1 / self.lost_share))
            if self._lost_turn % every == 0:
                if (self._lost_turn // every) % 2:
                    self.lost["500"] += 1
                    return aiohttp.web.Response(status=500, text="answer lost after applying (injected)")
                self.lost["drop"] += 1
                if raw.transport is not None:
                    raw.transport.abort()
        return response


@contextlib.asynccontextmanager
async def serve_standin(
    kind: type[FaultyStandin] | None = None, **options: Any
) -> AsyncIterator[FaultyStandin]:
    """`serve_api_standin`, for the FaultyStandin subclass (or `kind`, a subclass of it); held
    writes are let go at the end."""
    async with serve((kind or FaultyStandin)(**options)) as standin:
        try:
            yield standin
        finally:
            standin.gate.open()


# -- a client for the test's own requests ----------------------------------------------------------


class Cluster:
    """The test's own API client: creates, lists, patches; retries answers a fault injected."""

    RETRIED = (429, 500, 503, 504)

    def __init__(self, standin: ApiStandin, namespace: str = NAMESPACE) -> None:
        self.standin = standin
        self.namespace = namespace
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Cluster:
        self._session = aiohttp.ClientSession(base_url=str(self.standin.url))
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._session is not None
        await self._session.close()

    async def call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        assert self._session is not None
        data = None if body is None else json.dumps(body)
        for _ in range(50):
            async with self._session.request(
                method, path, data=data, headers={"Content-Type": content_type}
            ) as rsp:
                answer = await rsp.json(content_type=None)
                retry = (
                    rsp.status in self.RETRIED
                    or (rsp.status == 409 and answer.get("reason") == "Conflict")
                    or (rsp.status == 422 and "injected" in str(answer.get("message")))
                )
                if retry:
                    await asyncio.sleep(0.05)
                    continue
                if rsp.status >= 400:
                    raise AssertionError(f"{method} {path}: {rsp.status} {answer}")
                return answer
        raise AssertionError(f"{method} {path}: still failing after 50 tries")

    def path(self, plural: str, name: str | None = None) -> str:
        return self.standin.api_path(plural, self.namespace, name)

    async def create(self, plural: str, name: str, spec: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        kind = {"webhookevents": "WebhookEvent", "webhooksubscriptions": "WebhookSubscription"}[plural]
        body = {
            "apiVersion": GROUP_VERSION,
            "kind": kind,
            "metadata": {"name": name},
            "spec": dict(spec),
            **extra,
        }
        try:
            result: dict[str, Any] = await self.call("POST", self.path(plural), body)
        except AssertionError as error:
            if "AlreadyExists" not in str(error):  # a retried create whose first try got through
                raise
            result = await self.call("GET", self.path(plural, name))
        return result

    async def create_secret(self, name: str, data: Mapping[str, str]) -> dict[str, Any]:
        import base64

        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        result: dict[str, Any] = await self.call("POST", self.path("secrets"), body)
        return result

    async def subscribe(self, name: str, url: str, **spec: Any) -> dict[str, Any]:
        return await self.create("webhooksubscriptions", name, {"url": url, **spec})

    async def patch_spec(self, plural: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.call(
            "PATCH", self.path(plural, name), {"spec": dict(spec)}, "application/merge-patch+json"
        )
        return result

    async def delete(self, plural: str, name: str) -> None:
        await self.call("DELETE", self.path(plural, name))

    async def get(self, plural: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("GET", self.path(plural, name))
        return result

    async def events(self) -> list[dict[str, Any]]:
        listed = await self.call("GET", self.path("webhookevents"))
        return list(listed["items"])

    async def produce(
        self,
        count: int,
        *,
        prefix: str = "ev",
        rate: float | None = None,
        type_: str = "order.created",
        **spec: Any,
    ) -> list[dict[str, Any]]:
        """Create `count` events, `rate` per second (None: as fast as possible)."""
        created = []
        started = time.monotonic()
        for i in range(count):
            if rate:
                await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            created.append(
                await self.create(
                    "webhookevents", f"{prefix}-{i:04d}", {"type": type_, "data": {"n": i}, **spec}
                )
            )
        return created

    async def wait_finished(self, names: Iterable[str], timeout: float) -> list[dict[str, Any]]:
        """Wait until every named event is finished (`is_finished`); returns them all."""
        wanted = set(names)
        deadline = time.monotonic() + timeout
        while True:
            events = {
                e["metadata"]["name"]: e for e in await self.events() if e["metadata"]["name"] in wanted
            }
            open_ = [n for n in wanted if n not in events or not is_finished(events[n])]
            if not open_:
                return list(events.values())
            if time.monotonic() > deadline:
                sample = {n: (events.get(n) or {}).get("status") for n in sorted(open_)[:3]}
                raise AssertionError(
                    f"{len(open_)} of {len(wanted)} events not finished after {timeout}s: {sample}"
                )
            await asyncio.sleep(0.1)


def condition(event: Mapping[str, Any], type_: str) -> dict[str, Any] | None:
    for item in (event.get("status") or {}).get("conditions") or []:
        if item.get("type") == type_:
            return dict(item)
    return None


def is_finished(event: Mapping[str, Any]) -> bool:
    """Delivered, or Failed with no delivery still open (Failed=True comes with the first failed
    delivery, while the event's other deliveries may still be retrying)."""
    if (condition(event, "Delivered") or {}).get("status") == "True":
        return True
    open_ = [d for d in deliveries(event).values() if d.get("state") not in ("Succeeded", "Failed")]
    return (condition(event, "Failed") or {}).get("status") == "True" and not open_


def deliveries(event: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["subscription"]: d for d in (event.get("status") or {}).get("deliveries") or []}


def succeeded_pairs(events: Iterable[Mapping[str, Any]], paths: Mapping[str, str]) -> set[tuple[str, str]]:
    """(receiver path, event uid) of every delivery the status records as Succeeded."""
    return {
        (paths[sub], event["metadata"]["uid"])
        for event in events
        for sub, entry in deliveries(event).items()
        if entry.get("state") == "Succeeded" and sub in paths
    }


def tally(
    scenario: str,
    events: list[Mapping[str, Any]],
    expected: set[tuple[str, str]],
    acks: collections.Counter[tuple[str, str]],
    **extra: Any,
) -> Report:
    """The standard numbers from what receivers acknowledged against what was expected."""
    delivered = {pair for pair in expected if acks[pair] > 0}
    duplicated = sum(n - 1 for pair, n in acks.items() if n > 1)
    return Report(
        scenario=scenario,
        events=len(events),
        deliveries=len(expected),
        delivered=len(delivered),
        duplicated=duplicated,
        lost=len(expected - delivered),
        **extra,
    )
