"""kopf entry points, thin: each translates a watch event into a call on the engine.

Only event-watching and indexing handlers are used: they cost no API writes (no progress or
diff-base annotations, no finalizers). Retries, status and retention are the engine's, and so
is the WebhookEvent watch (engine/event_watch.py: kopf's per-object machinery could not keep
up with events under load).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import aiohttp.abc
import kopf

from webhook_operator.config import OperatorConfig
from webhook_operator.domain.api import GROUP, VERSION, Plural
from webhook_operator.domain.keys import SubscriptionKey
from webhook_operator.engine.subscriptions import index_keys, record_from_body
from webhook_operator.runtime import Engine


def _engine(memo: Any) -> Engine:
    engine: Engine = memo.engine
    return engine


@kopf.on.startup()
async def configure_and_start(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    engine = _engine(memo)
    engine.configure_kopf(settings)
    engine.subscriptions.bind(kwargs["subscription_index"], engine.kube)
    # kopf runs start-up before its login activity; the engine checks its access before it
    # starts, so it logs in now (kopf's login later finds the same credentials in place).
    await engine.login(settings=settings, **kwargs)
    await engine.start()


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    await _engine(memo).stop()


@kopf.on.login()
async def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    return await _engine(memo).login(**kwargs)


# Every handler below is `async def` although none awaits: kopf runs plain `def` handlers in a
# thread pool, which costs a thread hop per watch event (a fifth of the operator's CPU under load)
# and would touch the engine's asyncio objects (the work queue's Event) from a foreign thread.


def _served(namespace: str | None, memo: kopf.Memo, **_: Any) -> bool:
    """kopf's filter for every handler: only the namespaces of this process's shard."""
    return _engine(memo).serves(namespace)


@kopf.index(GROUP, VERSION, Plural.SUBSCRIPTIONS, when=_served)
async def subscription_index(body: kopf.Body, **_: Any) -> dict[tuple[str, ...], Any]:
    return index_keys(record_from_body(body))


@kopf.on.event(GROUP, VERSION, Plural.SUBSCRIPTIONS, when=_served)
async def subscription_event(type: str, namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    _engine(memo).subscription_changed(SubscriptionKey(namespace or "", name), deleted=type == "DELETED")


@kopf.on.event("", "v1", "secrets", when=_served)
async def secret_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _engine(memo).secret_observed(event["type"] or "ADDED", event["object"])


@kopf.on.event(GROUP, VERSION, "webhooksources")
async def source_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _engine(memo).source_observed(event["type"] or "ADDED", event["object"])


@kopf.on.probe(id="queue")
def queue_depth(memo: kopf.Memo, **_: Any) -> dict[str, int]:
    return _engine(memo).stats()


async def run_operator(
    config: OperatorConfig,
    *,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
    resolver: aiohttp.abc.AbstractResolver | None = None,
    on_engine: Callable[[Engine], None] | None = None,
) -> None:
    """Run the operator until `stop_flag` is set (or a signal arrives, when in the main thread).

    `stop_flag` and `ready_flag` may be asyncio or threading events (kopf accepts both).
    `on_engine` lets tests and the benchmark observe the engine (metrics, counters).
    Raises LeadershipLost when, with leader election, this process could not keep the Lease.
    """
    engine = Engine(config, resolver=resolver)
    if on_engine is not None:
        on_engine(engine)
    if config.leader_election is None:
        await _run_kopf(config, engine, stop_flag=stop_flag, ready_flag=ready_flag)
        return
    # kopf takes one stop flag: the caller's, relayed, or the engine's once leadership is lost.
    stop = asyncio.Event()
    engine.on_leadership_lost = stop.set
    relay = asyncio.create_task(_relay(stop_flag, stop)) if stop_flag is not None else None
    try:
        await _run_kopf(config, engine, stop_flag=stop, ready_flag=ready_flag)
    finally:
        if relay is not None:
            relay.cancel()
    if engine.leadership_lost:
        raise LeadershipLost("lost the leader Lease (could not renew it in time); delivering stopped")


class LeadershipLost(Exception):
    """The Lease could not be renewed: this process stopped delivering and must start over."""


async def _relay(source: asyncio.Event | threading.Event, target: asyncio.Event) -> None:
    if isinstance(source, asyncio.Event):
        await source.wait()
    else:
        # Polled: a thread blocked in wait() would hold up the loop's shutdown if it is never set.
        while not source.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    target.set()


async def _run_kopf(
    config: OperatorConfig,
    engine: Engine,
    *,
    stop_flag: asyncio.Event | threading.Event | None,
    ready_flag: asyncio.Event | threading.Event | None,
) -> None:
    liveness = f"http://0.0.0.0:{config.health_port}/healthz" if config.health_port is not None else None
    try:
        await kopf.operator(
            registry=kopf.get_default_registry(),
            memo=kopf.Memo(engine=engine),
            # kopf resolves the same patterns for its own watches (domain/scope.py).
            clusterwide=config.scope.cluster_wide,
            namespaces=list(config.scope.patterns),
            standalone=True,
            liveness_endpoint=liveness,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    except Exception as error:  # kopf wraps a failed start-up handler in an error of its own
        if engine.refused is not None:
            raise StartRefused(str(engine.refused)) from error
        raise


class StartRefused(Exception):
    """The operator cannot serve what it was asked to with the permissions it has."""
