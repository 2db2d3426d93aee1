"""The composition root: builds the engine's parts once and wires them together.

Everything with a lifetime (the HTTP client, the API session, the worker tasks, the metrics
server) is created here and closed in `stop()`, in the reverse order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp.abc
import aiohttp.web
import kopf

from webhook_operator.config import OperatorConfig
from webhook_operator.domain.clock import utcnow
from webhook_operator.domain.keys import EventKey, SubscriptionKey
from webhook_operator.engine.accounting import Accounting
from webhook_operator.engine.attempts import Attempts
from webhook_operator.engine.circuits import Circuits
from webhook_operator.engine.event_reconciler import EventReconciler
from webhook_operator.engine.event_watch import AccessRefused, EventWatch, check_access
from webhook_operator.engine.events import EventStore
from webhook_operator.engine.gates import Gates
from webhook_operator.engine.gates.circuit import CircuitGate
from webhook_operator.engine.gates.in_flight import InFlightGate
from webhook_operator.engine.gates.ordering import OrderingGate
from webhook_operator.engine.gates.rate import RateGate
from webhook_operator.engine.gates.readiness import ReadinessGate
from webhook_operator.engine.health_tracker import HealthTracker
from webhook_operator.engine.limiter import InFlightLimiter
from webhook_operator.engine.recovery import Recovery
from webhook_operator.engine.secrets import SecretStore
from webhook_operator.engine.sources import SourceManager
from webhook_operator.engine.subscription_reconciler import SubscriptionReconciler
from webhook_operator.engine.subscriptions import SubscriptionRegistry
from webhook_operator.engine.waiting import WaitingIndex
from webhook_operator.engine.workqueue import WorkQueue, run_workers
from webhook_operator.kube import KubeClient
from webhook_operator.leader import LeaderElector
from webhook_operator.logs import log
from webhook_operator.metrics import Metrics
from webhook_operator.recorder import EventRecorder
from webhook_operator.sender import Sender


class Engine:
    def __init__(
        self, config: OperatorConfig, *, resolver: aiohttp.abc.AbstractResolver | None = None
    ) -> None:
        self.config = config
        self.metrics = Metrics()
        self.kube = KubeClient(relogin=self._relogin)
        self.sender = Sender(config.egress, resolver=resolver)
        self.secrets = SecretStore(self.kube)
        self.health = HealthTracker(config.disable_rules)
        self.subscriptions = SubscriptionRegistry(self.secrets, self.sender, self.health, config.egress)
        self.event_queue: WorkQueue[EventKey] = WorkQueue()
        self.ordering = OrderingGate(wake=self.event_queue.add)
        self.events = EventStore(listeners=[self.ordering.observe])
        self.subscription_queue: WorkQueue[SubscriptionKey] = WorkQueue()
        self.limiter = InFlightLimiter()
        self.recorder = EventRecorder(self.kube, metrics=self.metrics)
        self.subscription_reconciler = SubscriptionReconciler(
            config,
            kube=self.kube,
            subscriptions=self.subscriptions,
            health=self.health,
            metrics=self.metrics,
            recorder=self.recorder,
            queue=self.subscription_queue,
            on_unblocked=self._subscription_unblocked,
            recovery=Recovery(self.kube, self.metrics, on_recovered=self._event_recovered),
        )
        self.waiting = WaitingIndex(self.metrics)
        self.circuits = Circuits(
            config.circuit_threshold,
            metrics=self.metrics,
            waiting=self.waiting.waiting,
            wake=self.event_queue.add,
        )
        accounting = Accounting(
            subscriptions=self.subscriptions,
            health=self.health,
            circuits=self.circuits,
            metrics=self.metrics,
            recorder=self.recorder,
            on_health_change=self.subscription_reconciler.health_changed,
        )
        # The order is the order of asking: the first gate that holds names the reason, and a
        # gate's admission runs only once the gates before it admitted (the circuit last: it may
        # have opened while a slot was awaited).
        self.gates = Gates(
            [
                ReadinessGate(),
                self.ordering,
                InFlightGate(self.limiter, slot_wait=config.slot_wait_seconds),
                RateGate(),
                CircuitGate(self.circuits),
            ]
        )
        self.event_reconciler = EventReconciler(
            config,
            kube=self.kube,
            events=self.events,
            subscriptions=self.subscriptions,
            gates=self.gates,
            attempts=Attempts(
                config,
                sender=self.sender,
                subscriptions=self.subscriptions,
                gates=self.gates,
                metrics=self.metrics,
                accounting=accounting,
            ),
            waiting=self.waiting,
            metrics=self.metrics,
            queue=self.event_queue,
            circuits=self.circuits,
            accounting=accounting,
        )
        self.sources = SourceManager(
            self.kube, self.metrics, max_data_bytes=config.max_data_bytes, now=utcnow
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._watch: EventWatch | None = None
        election = config.leader_election
        self.elector = LeaderElector(self.kube, election) if election is not None else None
        self._election: asyncio.Task[None] | None = None
        self.leadership_lost = False
        # Called once leadership is lost and delivering has stopped: run_operator stops kopf then.
        self.on_leadership_lost: Callable[[], None] = lambda: None
        self._metrics_runner: aiohttp.web.AppRunner | None = None
        self._login_kwargs: dict[str, Any] = {}
        self.refused: AccessRefused | None = None  # why start() refused to run, if it did

    # -- kopf's side ---------------------------------------------------------------------------

    def configure_kopf(self, settings: kopf.OperatorSettings) -> None:
        settings.posting.enabled = False  # our own, rate-limited Kubernetes Events instead
        # No change handlers, so no diffs: kopf need not deep-copy every body it watches.
        settings.persistence.diffbase_storage = _NoDiffBase()
        # kopf keeps a worker task, queue and timer per subscription or Secret until it has been
        # idle this long (default 5 s): applying 10,000 subscriptions at once held ~5,000 of them
        # and left a ~40 MB high-water mark that Python never returns. Our handlers only queue a
        # key, so a worker has nothing to wait for.
        settings.batching.idle_timeout = 0.5
        settings.watching.server_timeout = 600
        settings.watching.client_timeout = 660
        settings.watching.reconnect_backoff = 0.5
        settings.networking.request_timeout = 60
        settings.networking.error_backoffs = (0.5, 1, 2, 4, 8)

    async def login(self, **kwargs: Any) -> kopf.ConnectionInfo | None:
        self._login_kwargs = kwargs
        connection = self.config.connection or _login_from_environment(**kwargs)
        if connection is not None:
            await self.kube.use(connection)
        return connection

    async def _relogin(self) -> kopf.ConnectionInfo:
        connection = self.config.connection or _login_from_environment(**self._login_kwargs)
        if connection is None:
            raise kopf.LoginError("no credentials to log in again with")
        return connection

    def subscription_changed(self, key: SubscriptionKey, *, deleted: bool) -> None:
        if deleted:
            self.gates.forget_subscription(key)
        self.subscription_queue.add(key)

    def serves(self, namespace: str | None) -> bool:
        """Whether this process handles the namespace's events and subscriptions (its shard)."""
        return self.config.scope.serves(namespace or "")

    def event_observed(self, event_type: str, body: Mapping[str, Any]) -> None:
        if not self.serves((body.get("metadata") or {}).get("namespace")):
            return
        key = self.events.observe(event_type, body)
        if key is None:
            return
        if body.get("status"):
            # Already worked on (a restart lists thousands of these): new events go first.
            self.event_queue.add_resumed(key)
        else:
            self.event_queue.add(key)

    def secret_observed(self, event_type: str, body: Mapping[str, Any]) -> None:
        secret = self.secrets.observe(event_type, body)
        if secret is not None:
            for owner in self.secrets.owners_of(secret):
                self.subscription_queue.add(owner)

    def source_observed(self, event_type: str, body: Mapping[str, Any]) -> None:
        self.sources.observed(event_type, body)

    def stats(self) -> dict[str, int]:
        return {
            "events_open": self.events.open_count,
            "events_finished": self.events.finished_count,
            "queued": len(self.event_queue),
            "scheduled": self.event_queue.scheduled,
            "in_flight": self.limiter.in_flight,
            "circuits_open": self.circuits.open_count,
        }

    # -- lifetime --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check access, serve metrics, then deliver: at once, or once elected (a standby only
        watches: kopf's watches run, no worker nor the event watch)."""
        try:
            await check_access(self.kube, self.config.scope)
        except AccessRefused as error:
            self.refused = error
            raise kopf.PermanentError(str(error)) from error  # no retries: only a person can fix it
        if self.config.metrics_port is not None:
            self._metrics_runner = await _serve_metrics(self.metrics, self.config.metrics_port)
        if self.elector is None:
            self._deliver()
        else:
            self._election = asyncio.create_task(
                self._lead_when_elected(self.elector), name="leader election"
            )
        log(logging.INFO, "engine started", namespaces=str(self.config.scope))

    def _deliver(self) -> None:
        """Start the workers and the WebhookEvent watch: from here on this process writes and sends."""
        self.metrics.leader.set(1)
        self._tasks = [
            asyncio.create_task(
                run_workers(
                    self.event_queue,
                    self.event_reconciler.reconcile,
                    workers=self.config.event_workers,
                    on_error=_log_error("event"),
                )
            ),
            asyncio.create_task(
                run_workers(
                    self.subscription_queue,
                    self.subscription_reconciler.reconcile,
                    workers=self.config.subscription_workers,
                    on_error=_log_error("subscription"),
                )
            ),
        ]
        self._watch = EventWatch(
            self.kube,
            self.config.scope,
            observe=self.event_observed,
            known=self.events.keys,
            on_listed=self.ordering.listed,
        )
        self._watch.start()

    async def _lead_when_elected(self, elector: LeaderElector) -> None:
        renewed_at = await elector.acquire()
        self._deliver()
        grace = await elector.hold(renewed_at)
        # Lost: stop before the Lease can expire for anyone else (attempts past `grace` are
        # cancelled and sent again by the next leader), then have the process exit.
        await self._stop_delivering(grace)
        self.leadership_lost = True
        self.on_leadership_lost()

    async def _stop_delivering(self, grace: float) -> None:
        """Stop taking new attempts, let in-flight ones finish within `grace`, cancel the rest."""
        self.metrics.leader.set(0)
        self.event_reconciler.accepting = False
        await self.sources.stop()
        if self._watch is not None:
            await self._watch.stop()
            self._watch = None
        self.event_queue.close()
        self.subscription_queue.close()
        self.circuits.close_all()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            self._tasks = []

    async def stop(self) -> None:
        """Stop delivering (in-flight attempts finish, bounded), hand the Lease back, close the clients."""
        await self._stop_delivering(self.config.shutdown_grace_seconds)
        if self._election is not None:
            self._election.cancel()  # a standby's campaign, or a leader's renewals: both end here
            await asyncio.gather(self._election, return_exceptions=True)
        if self.elector is not None:
            await self.elector.release()  # after the attempts: the next leader must not repeat them
        await self.recorder.aclose()
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
        await self.sender.aclose()
        await self.kube.aclose()
        _cancel_orphaned_pause_waiters()
        log(logging.INFO, "engine stopped")

    def _subscription_unblocked(self, key: SubscriptionKey) -> None:
        self.event_reconciler.wake_waiting(key)

    def _event_recovered(self, key: EventKey, body: Mapping[str, Any]) -> None:
        """A finished event was put back to Pending (recover-since): it needs its reconciler again."""
        self.events.replace(key, body)
        self.event_queue.add(key)


class _NoDiffBase(kopf.DiffBaseStorage):
    """The diff base of an operator without change handlers: nothing to build, fetch or store.

    kopf deep-copies every watched body into an "essence" to find what changed for
    `on.create/update/delete` handlers, and reads the last one back from an annotation. This
    operator has only event-watching and indexing handlers (main.py), which get no diff; the
    copy was a tenth of its CPU per watch event. A change handler would need kopf's default
    storage (`AnnotationsDiffBaseStorage`) back.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def _cancel_orphaned_pause_waiters() -> None:
    """Cancel the watch pause-waiter tasks kopf (1.45) leaves behind, so the process exits now.

    A watcher cancelled while it handles an event leaves its streaming generator unfinished, and
    with it the `pause-waiter for <resource>` task its `finally` would cancel; kopf then waits
    5 s for that task before exiting: in about half of all SIGTERMs, 5 s more of downtime in a
    Recreate rollout. This runs in the cleanup handler, after every watcher has stopped.
    """
    for task in asyncio.all_tasks():
        if task.get_name().startswith("pause-waiter for ") and not task.done():
            task.cancel()


def _login_from_environment(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # The kubernetes client understands every kubeconfig form (exec plugins, OIDC, in-cluster).
    return kopf.login_via_client(**kwargs)


def _log_error(kind: str) -> Any:
    def on_error(key: object, error: BaseException) -> None:
        logging.getLogger("webhook_operator").error(
            "unexpected error reconciling %s %s",
            kind,
            key,
            exc_info=(type(error), error, error.__traceback__),
        )

    return on_error


async def _serve_metrics(metrics: Metrics, port: int) -> aiohttp.web.AppRunner:
    async def handle(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    app = aiohttp.web.Application()
    app.router.add_get("/metrics", handle)
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    # No host: every interface, IPv4 and IPv6 alike (it is scraped from the pod network).
    await aiohttp.web.TCPSite(runner, None, port).start()
    return runner
