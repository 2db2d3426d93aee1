"""`webhook-operator demo`: the whole flow on this machine, with no cluster.

Three things run in this process, all over real HTTP on 127.0.0.1:

- the Kubernetes API stand-in (`testing.api_standin`), serving the CRDs;
- the real operator (`main.run_operator`), in its own thread and event loop, as in production
  (`testing.operator_thread`);
- a receiver that verifies every signature (`demo.receiver`).

The demo applies the examples (the repository's `examples/*.yaml` when it runs from a checkout,
built-in equivalents otherwise: a wheel does not ship `examples/`), their URLs pointed at the
local receiver; it adds one subscription whose endpoint answers 503 twice, to show a retry.
It prints each request as the receiver verifies it, then both kinds as `kubectl get` shows them
and the retried event as `kubectl describe` does. Any step that does not work ends the demo
with a message saying which, and exit status 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TextIO, TypeVar

import aiohttp

from webhook_operator.config import OperatorConfig
from webhook_operator.demo.console import LOG_ENV, Console, configure_logging
from webhook_operator.demo.examples import (
    NAMESPACE,
    REPO_EXAMPLES,
    RETRY_EVENT,
    RETRY_FAILURES,
    RETRY_PATH,
    RETRY_SUBSCRIPTION,
    DemoError,
    as_stored,
    load_examples,
    point_at,
    retry_resources,
    select_order_events,
    signing_keys,
)
from webhook_operator.demo.receiver import Receiver, Route, make_verifier, serve_receiver
from webhook_operator.demo.tables import describe_event, get_table, printer_columns
from webhook_operator.domain.api import GROUP, Kind, Plural
from webhook_operator.domain.clock import utcnow
from webhook_operator.testing.api_standin import ApiStandin, StandinError, serve_api_standin
from webhook_operator.testing.operator_thread import OperatorFailed, OperatorThread, standin_config

T = TypeVar("T")

STARTUP_TIMEOUT = 20.0
READY_TIMEOUT = 10.0
DELIVERY_TIMEOUT = 20.0
COUNTERS_TIMEOUT = 5.0
STOP_TIMEOUT = 10.0

_PLURALS = {
    "Namespace": "namespaces",
    "Secret": "secrets",
    Kind.SUBSCRIPTION: Plural.SUBSCRIPTIONS,
    Kind.EVENT: Plural.EVENTS,
}
_SHOWN_KIND = {
    "Namespace": "namespace",
    "Secret": "secret",
    Kind.SUBSCRIPTION: f"{Kind.SUBSCRIPTION.lower()}.{GROUP}",
    Kind.EVENT: f"{Kind.EVENT.lower()}.{GROUP}",
}


# -- the flow ---------------------------------------------------------------------------------------


async def run_demo(
    events: int = 3,
    *,
    examples: pathlib.Path | None = REPO_EXAMPLES,
    out: TextIO | None = None,
    log_level: str | None = None,
) -> int:
    """Run the demo; 0 when everything was delivered and verified as expected, 1 otherwise.

    `examples`: the directory of manifests to apply (None: the built-in ones). `log_level`
    (or $WEBHOOK_OPERATOR_DEMO_LOG): also show the operator's and kopf's log lines at that level.
    """
    console = Console(out or sys.stdout)
    restore = configure_logging(log_level or os.environ.get(LOG_ENV))
    try:
        await Demo(console, events=events, examples=examples).run()
    except asyncio.CancelledError:  # Ctrl-C: everything is stopped by now; no traceback for that
        console.line()
        console.line("demo interrupted")
        return 130
    except (DemoError, OperatorFailed) as error:
        console.line()
        console.line(f"demo failed: {error}")
        console.line(f"(run again with {LOG_ENV}=debug to see the operator's log)")
        return 1
    except Exception as error:  # anything else is a bug; say what it was, briefly
        console.line()
        console.line(f"demo failed unexpectedly: {type(error).__name__}: {error}")
        console.line(f"(run again with {LOG_ENV}=debug to see the operator's log)")
        return 1
    finally:
        restore()
    return 0


class Demo:
    def __init__(self, console: Console, *, events: int, examples: pathlib.Path | None) -> None:
        self.console = console
        self.events = events
        self.examples = examples
        self.uids: dict[str, str] = {}  # event uid -> name, for the arrival lines
        self.session: aiohttp.ClientSession | None = None
        self.standin: ApiStandin | None = None

    async def run(self) -> None:
        say = self.console.step
        docs, origin = load_examples(self.examples)
        keys = signing_keys(docs)
        secret_name = next((name for (ns, name) in keys if ns == NAMESPACE), None)
        docs = select_order_events(docs, self.events) + retry_resources(secret_name)

        async with contextlib.AsyncExitStack() as stack:
            say("starting the Kubernetes API stand-in (no cluster needed)")
            self.standin = standin = await stack.enter_async_context(serve_api_standin())
            self.session = await stack.enter_async_context(aiohttp.ClientSession(base_url=standin.url))
            say(f"  API stand-in at {standin.url}, serving the WebhookSubscription and WebhookEvent CRDs")

            receiver = await stack.enter_async_context(serve_receiver())
            docs = [point_at(d, receiver.url) if d.get("kind") == "WebhookSubscription" else d for d in docs]
            self._route(receiver, docs, keys)
            verifiers = {r.verifier.name for r in receiver.routes.values() if r.verifier is not None}
            say(f"  receiver at {receiver.url}, verifying signatures with {', '.join(verifiers) or '-'}")

            say("starting the operator (kopf, in its own thread)")
            operator = OperatorThread(self._config(standin))
            stack.push_async_callback(self._stop, operator)
            await operator.start(STARTUP_TIMEOUT)
            say("  operator running: watching WebhookSubscriptions, WebhookEvents and Secrets")

            self.console.line()
            say(f"$ kubectl apply -f {origin or 'examples/'}")
            if not origin:
                say("  (no examples/ directory next to this install: applying the built-in copy of it)")
            say(f"  (spec.url of each subscription pointed at the local receiver, {receiver.url})")
            setup = [d for d in docs if d.get("kind") != "WebhookEvent"]
            await self._apply(setup)
            subscriptions = [d["metadata"]["name"] for d in setup if d.get("kind") == "WebhookSubscription"]
            await self._wait_ready(subscriptions, operator)

            await self._apply([d for d in docs if d.get("kind") == "WebhookEvent"])
            say(
                f"deliveries, as the receiver verifies them ({RETRY_PATH} answers "
                f"{', '.join(map(str, RETRY_FAILURES))} first, so {RETRY_SUBSCRIPTION} retries):"
            )
            printer = asyncio.create_task(self._print_arrivals(receiver))
            stack.push_async_callback(_cancel, printer)
            final = await self._wait_delivered(operator)
            await self._drain(receiver)
            self._check(final, receiver)
            subs = await self._wait_counters(final, operator)

            now = utcnow()
            self.console.line()
            self.console.line(f"$ kubectl get webhooksubscriptions -n {NAMESPACE}")
            self.console.line(get_table(subs, await self._columns(Plural.SUBSCRIPTIONS), now))
            self.console.line()
            self.console.line(f"$ kubectl get webhookevents -n {NAMESPACE}")
            self.console.line(get_table(final, await self._columns(Plural.EVENTS), now))
            self.console.line()
            retried = next(e for e in final if e["metadata"]["name"] == RETRY_EVENT)
            self.console.line(f"$ kubectl describe webhookevent {RETRY_EVENT} -n {NAMESPACE}")
            self.console.line(describe_event(retried, await self._k8s_events(retried), now))
            self.console.line()
            say("stopping")
        self.console.step(
            f"done {self.console.ok}  every request signed and verified, one retried until it succeeded"
        )

    # -- steps ----------------------------------------------------------------------------------

    def _config(self, standin: ApiStandin) -> OperatorConfig:
        return standin_config(standin.url, event_workers=8)

    def _route(
        self, receiver: Receiver, docs: Sequence[Mapping[str, Any]], keys: Mapping[tuple[str, str], str]
    ) -> None:
        for doc in docs:
            if doc.get("kind") != "WebhookSubscription":
                continue
            meta, spec = doc["metadata"], doc["spec"]
            secret = ((spec.get("signing") or {}).get("secretRef") or {}).get("name")
            key = keys.get((meta.get("namespace", NAMESPACE), secret)) if secret else None
            if secret and key is None:
                raise DemoError(f"subscription {meta['name']} names Secret {secret}, which the examples lack")
            path = urllib.parse.urlsplit(spec["url"]).path or "/"
            failures = list(RETRY_FAILURES) if meta["name"] == RETRY_SUBSCRIPTION else []
            receiver.routes[path] = Route(meta["name"], make_verifier(key) if key else None, failures)

    async def _apply(self, docs: Sequence[Mapping[str, Any]]) -> None:
        assert self.standin is not None
        for doc in docs:
            kind = str(doc.get("kind"))
            if kind not in _PLURALS:
                self.console.step(f"  skipped {kind} (the demo applies {', '.join(_PLURALS)})")
                continue
            namespace = (
                None if kind == "Namespace" else (doc.get("metadata") or {}).get("namespace", NAMESPACE)
            )
            try:
                created = await self.standin.create(_PLURALS[kind], namespace, as_stored(doc))
            except StandinError as error:
                raise DemoError(f"creating {kind} {doc.get('metadata')}: {error}") from None
            if kind == "WebhookEvent":
                self.uids[created["metadata"]["uid"]] = created["metadata"]["name"]
            self.console.step(f"  {_SHOWN_KIND[kind]}/{created['metadata']['name']} created")

    async def _wait_ready(self, names: Sequence[str], operator: OperatorThread) -> None:
        self.console.step(f"waiting for {len(names)} subscriptions to be Ready")

        async def all_ready() -> list[dict[str, Any]] | None:
            subs = [await self._get(Plural.SUBSCRIPTIONS, name) for name in names]
            return subs if all(_condition(s, "Ready").get("status") == "True" for s in subs) else None

        try:
            subs = await _poll(all_ready, READY_TIMEOUT, operator)
        except TimeoutError:
            lines = []
            for name in names:
                ready = _condition(await self._get(Plural.SUBSCRIPTIONS, name), "Ready")
                if ready.get("status") != "True":
                    lines.append(
                        f"{name}: {ready.get('reason', 'no Ready condition yet')} {ready.get('message', '')}"
                    )
            raise DemoError(
                f"subscriptions not Ready after {READY_TIMEOUT:.0f} s: " + "; ".join(lines)
            ) from None
        for sub in subs:
            ready = _condition(sub, "Ready")
            self.console.step(f"  {sub['metadata']['name']}: Ready={ready['status']} ({ready['reason']})")

    async def _wait_delivered(self, operator: OperatorThread) -> list[dict[str, Any]]:
        async def all_final() -> list[dict[str, Any]] | None:
            events = await self._list(Plural.EVENTS)
            done = all(
                _condition(e, "Delivered").get("status") == "True"
                or _condition(e, "Failed").get("status") == "True"
                for e in events
            )
            return events if done and len(events) >= len(self.uids) else None

        try:
            return await _poll(all_final, DELIVERY_TIMEOUT, operator)
        except TimeoutError:
            waiting = [
                f"{e['metadata']['name']} ({_delivery_summary(e)})"
                for e in await self._list(Plural.EVENTS)
                if _condition(e, "Delivered").get("status") != "True"
            ]
            raise DemoError(
                f"events not delivered after {DELIVERY_TIMEOUT:.0f} s: {'; '.join(waiting)}"
            ) from None

    def _check(self, events: Sequence[Mapping[str, Any]], receiver: Receiver) -> None:
        """What the demo promises: everything delivered, every request verified, one retry."""
        problems = []
        for event in events:
            if _condition(event, "Delivered").get("status") != "True":
                problems.append(f"{event['metadata']['name']} was not delivered ({_delivery_summary(event)})")
        bad = [a for a in receiver.arrivals if a.verified is False or a.answered == 404]
        problems += [f"request to {a.path} for {a.event_type}: {a.problem}" for a in bad]
        if not any(a.verified for a in receiver.arrivals):
            problems.append("no signed request arrived at the receiver")
        retried = next((e for e in events if e["metadata"]["name"] == RETRY_EVENT), None)
        entry = _delivery(retried, RETRY_SUBSCRIPTION) if retried else {}
        expected = len(RETRY_FAILURES) + 1
        if entry.get("state") != "Succeeded" or entry.get("attempts") != expected:
            problems.append(
                f"{RETRY_EVENT} should be Succeeded after {expected} attempts, "
                f"is {entry.get('state')} after {entry.get('attempts')}"
            )
        for event in events:
            for entry in (event.get("status") or {}).get("deliveries") or []:
                if entry.get("state") != "Succeeded":
                    continue
                seen = [
                    a
                    for a in receiver.arrivals
                    if a.webhook_id == event["metadata"]["uid"]
                    and a.subscription == entry["subscription"]
                    and 200 <= a.answered < 300
                ]
                if not seen:
                    problems.append(
                        f"{event['metadata']['name']} is Succeeded for {entry['subscription']}, "
                        "but the receiver never accepted it"
                    )
        if problems:
            raise DemoError("; ".join(problems))

    async def _wait_counters(
        self, events: Sequence[Mapping[str, Any]], operator: OperatorThread
    ) -> list[dict[str, Any]]:
        """The subscriptions once their deliveredCount shows every success (flushed in batches)."""
        expected: dict[str, int] = {}
        for event in events:
            for entry in (event.get("status") or {}).get("deliveries") or []:
                if entry.get("state") == "Succeeded":
                    expected[entry["subscription"]] = expected.get(entry["subscription"], 0) + 1

        async def caught_up() -> list[dict[str, Any]] | None:
            subs = await self._list(Plural.SUBSCRIPTIONS)
            counts = {s["metadata"]["name"]: (s.get("status") or {}).get("deliveredCount", 0) for s in subs}
            return subs if all(counts.get(name) == n for name, n in expected.items()) else None

        try:
            return await _poll(caught_up, COUNTERS_TIMEOUT, operator)
        except TimeoutError:
            subs = await self._list(Plural.SUBSCRIPTIONS)
            got = {s["metadata"]["name"]: (s.get("status") or {}).get("deliveredCount") for s in subs}
            raise DemoError(f"subscription deliveredCount {got}, expected {expected}") from None

    async def _print_arrivals(self, receiver: Receiver) -> None:
        while True:
            arrival = await receiver.queue.get()
            self.console.arrival(arrival, self.uids.get(arrival.webhook_id, "?"))
            receiver.queue.task_done()

    async def _drain(self, receiver: Receiver) -> None:
        await asyncio.wait_for(receiver.queue.join(), timeout=2)

    async def _stop(self, operator: OperatorThread) -> None:
        try:
            await operator.stop(STOP_TIMEOUT)
        except OperatorFailed as error:
            self.console.step(f"  {error}")

    # -- reading the API, as kubectl would ------------------------------------------------------

    async def _get(self, plural: str, name: str) -> dict[str, Any]:
        assert self.standin is not None
        obj: dict[str, Any] = await self._call(self.standin.api_path(plural, NAMESPACE, name))
        return obj

    async def _list(self, plural: str) -> list[dict[str, Any]]:
        assert self.standin is not None
        items: list[dict[str, Any]] = (await self._call(self.standin.api_path(plural, NAMESPACE)))["items"]
        return items

    async def _columns(self, plural: str) -> list[Any]:
        crd = await self._call(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.{GROUP}")
        return printer_columns(crd)

    async def _k8s_events(self, obj: Mapping[str, Any]) -> list[dict[str, Any]]:
        assert self.standin is not None
        items = (await self._call(self.standin.api_path("events", NAMESPACE)))["items"]
        uid = obj["metadata"]["uid"]
        return [e for e in items if (e.get("involvedObject") or {}).get("uid") == uid]

    async def _call(self, path: str) -> Any:
        assert self.session is not None
        async with self.session.get(path) as response:
            if response.status != 200:
                raise DemoError(f"GET {path}: HTTP {response.status} from the API stand-in")
            return await response.json()


# -- helpers -----------------------------------------------------------------------------------------


async def _poll(probe: Callable[[], Awaitable[T | None]], timeout: float, operator: OperatorThread) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        operator.check()
        found = await probe()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise TimeoutError


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _condition(obj: Mapping[str, Any] | None, type_: str) -> dict[str, Any]:
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == type_:
            return dict(item)
    return {}


def _delivery(event: Mapping[str, Any], subscription: str) -> dict[str, Any]:
    for item in (event.get("status") or {}).get("deliveries") or []:
        if item.get("subscription") == subscription:
            return dict(item)
    return {}


def _delivery_summary(event: Mapping[str, Any]) -> str:
    entries = (event.get("status") or {}).get("deliveries")
    if entries is None:
        return "no status yet"
    return (
        ", ".join(
            f"{d.get('subscription')}: {d.get('state')} after {d.get('attempts', 0)} attempt(s)"
            + (f", {d['lastError']}" if d.get("lastError") else "")
            for d in entries
        )
        or "no deliveries"
    )


__all__ = ["run_demo"]
