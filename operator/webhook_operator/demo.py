"""`webhook-operator demo`: the whole flow on this machine, with no cluster.

Three things run in this process, all over real HTTP on 127.0.0.1:

- the Kubernetes API stand-in (`api_standin`), serving the CRDs;
- the real operator (`main.run_operator`), in its own thread and event loop, as in production;
- a receiver that verifies every signature (`demo_receiver`).

The demo applies the examples (the repository's `examples/*.yaml` when it runs from a checkout,
built-in equivalents otherwise: a wheel does not ship `examples/`), their URLs pointed at the
local receiver; it adds one subscription whose endpoint answers 503 twice, to show a retry.
It prints each request as the receiver verifies it, then both kinds as `kubectl get` shows them
and the retried event as `kubectl describe` does. Any step that does not work ends the demo
with a message saying which, and exit status 1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import logging
import os
import pathlib
import secrets
import sys
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TextIO, TypeVar

import aiohttp
import kopf
import yaml

from webhook_operator.api_standin import ApiStandin, StandinError, serve_api_standin
from webhook_operator.config import OperatorConfig
from webhook_operator.demo_receiver import Arrival, Receiver, Route, make_verifier, serve_receiver
from webhook_operator.demo_tables import describe_event, get_table, printer_columns
from webhook_operator.domain.clock import utcnow
from webhook_operator.domain.egress import EgressPolicy

T = TypeVar("T")

GROUP_VERSION = "webhooks.openplatform.dev/v1alpha1"
REPO_EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
LOG_ENV = "WEBHOOK_OPERATOR_DEMO_LOG"  # e.g. =info or =debug: the operator's own log lines on stderr
NAMESPACE = "shop"

# The subscription added to the examples to show a retry: its endpoint answers 503 twice.
RETRY_SUBSCRIPTION = "payments-to-ledger"
RETRY_PATH = "/hooks/payments"
RETRY_EVENT = "payment-3001-captured"
RETRY_FAILURES = (503, 503)

STARTUP_TIMEOUT = 20.0
READY_TIMEOUT = 10.0
DELIVERY_TIMEOUT = 20.0
COUNTERS_TIMEOUT = 5.0
STOP_TIMEOUT = 10.0

_PLURALS = {
    "Namespace": "namespaces",
    "Secret": "secrets",
    "WebhookSubscription": "webhooksubscriptions",
    "WebhookEvent": "webhookevents",
}
_SHOWN_KIND = {
    "Namespace": "namespace",
    "Secret": "secret",
    "WebhookSubscription": "webhooksubscription.webhooks.openplatform.dev",
    "WebhookEvent": "webhookevent.webhooks.openplatform.dev",
}


class DemoError(Exception):
    """A step of the demo did not work; the message says which, for the person running it."""


# -- the examples -------------------------------------------------------------------------------


def builtin_examples() -> list[dict[str, Any]]:
    """The equivalent of the repository's examples/*.yaml, for installs without the repository.

    The signing key is made fresh for each run (the repository's is public by design).
    """
    key = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    signing = {"secretRef": {"name": "shop-webhook-signing"}}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "shop-webhook-signing", "namespace": NAMESPACE},
            "type": "Opaque",
            "data": {"signingKey": base64.b64encode(key.encode()).decode()},
        },
        {
            "apiVersion": GROUP_VERSION,
            "kind": "WebhookSubscription",
            "metadata": {"name": "orders-to-crm", "namespace": NAMESPACE},
            "spec": {
                "url": "http://webhook-receiver.shop.svc.cluster.local:8000/hooks/orders",
                "eventTypes": ["order.*"],
                "format": "StandardWebhooks",
                "signing": signing,
                "headers": {"X-Tenant": NAMESPACE},
                "timeoutSeconds": 10,
                "retry": {
                    "maxAttempts": 8,
                    "backoff": "Exponential",
                    "initialDelaySeconds": 5,
                    "maxDelaySeconds": 3600,
                },
                "maxInFlight": 10,
            },
        },
        {
            "apiVersion": GROUP_VERSION,
            "kind": "WebhookSubscription",
            "metadata": {"name": "invoices-to-billing", "namespace": NAMESPACE},
            "spec": {
                "url": "http://webhook-receiver.shop.svc.cluster.local:8001/hooks/invoices",
                "eventTypes": ["invoice.paid"],
                "format": "CloudEvents",
                "signing": signing,
            },
        },
        _event(
            "order-1001-created",
            "order.created",
            {
                "orderId": 1001,
                "customer": {"id": "c-42", "email": "ada@example.com"},
                "lines": [{"sku": "BOOK-123", "quantity": 2, "unitPrice": "19.90"}],
                "total": {"amount": "39.80", "currency": "EUR"},
            },
            source="/shop/orders",
            ttlSecondsAfterFinished=86400,
        ),
        _event(
            "order-1001-shipped",
            "order.shipped",
            {"orderId": 1001, "carrier": "DHL", "trackingNumber": "00340434161234567890"},
            source="/shop/orders",
            subscriptions=["orders-to-crm"],
        ),
        _event(
            "invoice-2001-paid",
            "invoice.paid",
            {
                "invoiceId": 2001,
                "orderId": 1001,
                "amount": {"value": "39.80", "currency": "EUR"},
                "paidAt": "2025-01-15T10:30:00Z",
            },
            source="/shop/billing",
        ),
        _event("product-42-updated", "product.updated", {"productId": 42, "changed": ["price"]}),
    ]


def _event(name: str, type_: str, data: dict[str, Any], **spec: Any) -> dict[str, Any]:
    ordered = {"type": type_, **({"source": spec.pop("source")} if "source" in spec else {})}
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "WebhookEvent",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {**ordered, **spec, "data": data},
    }


def load_examples(directory: pathlib.Path | None) -> tuple[list[dict[str, Any]], str]:
    """The example manifests in `directory` (sorted by file name), or the built-in ones.

    Returns the documents and the directory they came from ("" for the built-in ones).
    """
    if directory is not None and directory.is_dir():
        docs: list[dict[str, Any]] = []
        for path in sorted(directory.glob("*.y*ml")):
            try:
                docs += [
                    d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if isinstance(d, dict)
                ]
            except (OSError, yaml.YAMLError) as error:
                raise DemoError(f"cannot read {path}: {error}") from None
        if any(d.get("kind") == "WebhookSubscription" for d in docs):
            return docs, f"{_shown_path(directory)}/"
    return builtin_examples(), ""


def _shown_path(path: pathlib.Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(pathlib.Path.cwd()))
    return str(path)


def retry_resources(secret_name: str | None) -> list[dict[str, Any]]:
    """A subscription with fast retries whose endpoint fails twice, and one event for it."""
    spec: dict[str, Any] = {
        "url": f"http://localhost:8000{RETRY_PATH}",
        "eventTypes": ["payment.*"],
        "retry": {"maxAttempts": 5, "backoff": "Exponential", "initialDelaySeconds": 1, "maxDelaySeconds": 2},
    }
    if secret_name is not None:
        spec["signing"] = {"secretRef": {"name": secret_name}}
    return [
        {
            "apiVersion": GROUP_VERSION,
            "kind": "WebhookSubscription",
            "metadata": {"name": RETRY_SUBSCRIPTION, "namespace": NAMESPACE},
            "spec": spec,
        },
        _event(
            RETRY_EVENT,
            "payment.captured",
            {"paymentId": 3001, "orderId": 1001, "amount": "39.80"},
            source="/shop/payments",
        ),
    ]


def select_order_events(docs: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """`--events N` order events in all: the examples' own first, then generated ones."""
    order_events = [d for d in docs if d.get("kind") == "WebhookEvent" and _type(d).startswith("order.")]
    kept = order_events[: max(0, count)]
    generated = [
        {
            "apiVersion": GROUP_VERSION,
            "kind": "WebhookEvent",
            "metadata": {"generateName": "order-", "namespace": NAMESPACE},
            "spec": {"type": "order.created", "source": "/shop/orders", "data": {"orderId": 1100 + i}},
        }
        for i in range(max(0, count - len(order_events)))
    ]
    return [d for d in docs if d not in order_events or d in kept] + generated


def _type(doc: Mapping[str, Any]) -> str:
    return str((doc.get("spec") or {}).get("type", ""))


def point_at(doc: dict[str, Any], receiver_url: str) -> dict[str, Any]:
    """A copy of a subscription whose URL keeps its path but goes to the local receiver."""
    doc = copy.deepcopy(doc)
    url = urllib.parse.urlsplit(doc["spec"]["url"])
    doc["spec"]["url"] = receiver_url + (url.path or "/") + (f"?{url.query}" if url.query else "")
    return doc


def signing_keys(docs: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """The `signingKey` of every Secret in the manifests, by (namespace, name)."""
    keys = {}
    for doc in docs:
        if doc.get("kind") != "Secret":
            continue
        meta = doc.get("metadata") or {}
        value = (doc.get("stringData") or {}).get("signingKey")
        if value is None and (encoded := (doc.get("data") or {}).get("signingKey")) is not None:
            value = base64.b64decode(encoded).decode()
        if value is not None:
            keys[(meta.get("namespace", NAMESPACE), meta["name"])] = str(value)
    return keys


def as_stored(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What an API server stores for `doc`: a Secret's stringData moves into base64 data."""
    body = copy.deepcopy(dict(doc))
    if body.get("kind") == "Secret" and "stringData" in body:
        data = dict(body.get("data") or {})
        for key, value in body.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        body["data"] = data
    return body


# -- output ---------------------------------------------------------------------------------------


class Console:
    """Progress lines with the time since the start, flushed at once (the demo is watched live)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.monotonic()
        encoding = getattr(out, "encoding", None) or "ascii"
        try:
            "✓✗→…".encode(encoding)
            self.ok, self.bad, self.arrow, self.more = "✓", "✗", "→", "…"
        except (UnicodeEncodeError, LookupError):
            self.ok, self.bad, self.arrow, self.more = "OK", "FAILED", "->", "..."

    def step(self, text: str) -> None:
        self.line(f"[{time.monotonic() - self.started:5.1f}s] {text}")

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def arrival(self, arrival: Arrival, event_name: str) -> None:
        if arrival.verified is None:
            check = "unsigned"
        elif arrival.verified:
            check = f"signature verified {self.ok}"
        else:
            check = f"signature INVALID {self.bad} ({arrival.problem})"
        answer = f"{arrival.answered}" + (
            " (scripted outage: will be retried)" if arrival.answered == 503 else ""
        )
        what = f"{event_name} ({arrival.event_type})"
        self.line(
            f"[{arrival.at - self.started:5.1f}s]   {what:<42} {self.arrow} {arrival.subscription:<20} "
            f"attempt {arrival.attempt}  webhook-id {arrival.webhook_id[:8]}{self.more}  "
            f"{check}  {self.arrow} {answer}"
        )


# -- the operator in a thread ---------------------------------------------------------------------


class OperatorThread:
    """The real operator in a thread with its own event loop, as `webhook-operator run` runs it.

    Its own loop, not a task in the demo's: kopf treats the tasks created after it started as
    its own, and would wait for (then cancel) the demo's at shutdown.
    """

    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="operator", daemon=True)

    def _run(self) -> None:
        from webhook_operator.main import run_operator

        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(run_operator(self.config, stop_flag=self._stop, ready_flag=self._ready))
        except BaseException as error:  # reported by start()/alive()
            self.error = error
        finally:
            self._ready.set()
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def start(self) -> None:
        self._thread.start()
        ready = await asyncio.to_thread(self._ready.wait, STARTUP_TIMEOUT)
        self.check()
        if not ready:
            raise DemoError(f"the operator did not get ready within {STARTUP_TIMEOUT:.0f} s")

    def check(self) -> None:
        if self.error is not None:
            raise DemoError(f"the operator stopped: {type(self.error).__name__}: {self.error}")
        if self._thread.ident is not None and not self._thread.is_alive():
            raise DemoError("the operator stopped unexpectedly")

    async def stop(self) -> bool:
        """Ask the operator to stop; True if it did within STOP_TIMEOUT."""
        if self._thread.ident is None:
            return True
        self._stop.set()
        await asyncio.to_thread(self._thread.join, STOP_TIMEOUT)
        return not self._thread.is_alive()


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
    restore = _configure_logging(log_level or os.environ.get(LOG_ENV))
    try:
        await Demo(console, events=events, examples=examples).run()
    except asyncio.CancelledError:  # Ctrl-C: everything is stopped by now; no traceback for that
        console.line()
        console.line("demo interrupted")
        return 130
    except DemoError as error:
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


def _configure_logging(level_name: str | None) -> Callable[[], None]:
    """Quiet by default: the demo prints what happens; kopf's and the operator's lines on request.

    Returns a function that puts the logging configuration back as it was.
    """
    from webhook_operator import logs

    root = logging.getLogger()
    quieted = ("kopf", "webhook_operator", "aiohttp")
    saved = (list(root.handlers), root.level, [logging.getLogger(name).level for name in quieted])
    level = getattr(logging, level_name.upper(), None) if level_name else None
    logs.configure("text", level if isinstance(level, int) else logging.WARNING)
    for handler in root.handlers:
        handler.addFilter(_expected_notices)
    if not isinstance(level, int):
        logging.getLogger("kopf").setLevel(logging.WARNING)
        # The operator logs each failed attempt as a warning; the demo shows those itself.
        logging.getLogger("webhook_operator").setLevel(logging.ERROR)
        logging.getLogger("aiohttp").setLevel(logging.ERROR)

    def restore() -> None:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, old_level in zip(quieted, saved[2], strict=True):
            logging.getLogger(name).setLevel(old_level)

    return restore


def _expected_notices(record: logging.LogRecord) -> bool:
    """Drop kopf's notice that it runs outside the main thread: the demo does that on purpose."""
    return not (record.name.startswith("kopf") and "running not in the main thread" in record.getMessage())


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
            await operator.start()
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
            self.console.line(get_table(subs, await self._columns("webhooksubscriptions"), now))
            self.console.line()
            self.console.line(f"$ kubectl get webhookevents -n {NAMESPACE}")
            self.console.line(get_table(final, await self._columns("webhookevents"), now))
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
        return OperatorConfig(
            egress=EgressPolicy.from_cidrs(["127.0.0.0/8", "::1/128"]),
            event_workers=8,
            health_flush_seconds=0.2,
            shutdown_grace_seconds=2.0,
            connection=kopf.ConnectionInfo(server=str(standin.url), insecure=True),
        )

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
            subs = [await self._get("webhooksubscriptions", name) for name in names]
            return subs if all(_condition(s, "Ready").get("status") == "True" for s in subs) else None

        try:
            subs = await _poll(all_ready, READY_TIMEOUT, operator)
        except TimeoutError:
            lines = []
            for name in names:
                ready = _condition(await self._get("webhooksubscriptions", name), "Ready")
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
            events = await self._list("webhookevents")
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
                for e in await self._list("webhookevents")
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
            subs = await self._list("webhooksubscriptions")
            counts = {s["metadata"]["name"]: (s.get("status") or {}).get("deliveredCount", 0) for s in subs}
            return subs if all(counts.get(name) == n for name, n in expected.items()) else None

        try:
            return await _poll(caught_up, COUNTERS_TIMEOUT, operator)
        except TimeoutError:
            subs = await self._list("webhooksubscriptions")
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
        if not await operator.stop():
            self.console.step(f"  the operator did not stop within {STOP_TIMEOUT:.0f} s; leaving it behind")

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
        crd = await self._call(
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.webhooks.openplatform.dev"
        )
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


__all__ = ["DemoError", "builtin_examples", "load_examples", "run_demo"]
