"""One WebhookSource at work: a reflector on its objects, an emitter of WebhookEvents, its status.

The reflector hands every observed state to `Pending`, which keeps only the latest state per
object name; the emitter takes them one by one at most `maxEventsPerSecond` a second, compares
each with the fingerprint it last emitted for that object (domain/sources.py) and creates the
events that difference calls for. Under the cap, states that arrive faster are coalesced: the
latest wins. What was emitted is recorded in status.observedObjects (name -> fingerprint), read
back at start, so a restart neither repeats nor misses a change; an event created just before a
crash, before its status write, has the same deterministic name again and answers 409.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from webhook_operator.domain.api import GROUP_VERSION
from webhook_operator.domain.clock import format_time
from webhook_operator.domain.conditions import Condition, upsert_condition
from webhook_operator.domain.sources import (
    MAX_OBSERVED_OBJECTS,
    Change,
    Pending,
    SourceSpec,
    classify,
    event_data,
    event_name,
    event_type,
    fingerprint,
    object_path,
)
from webhook_operator.engine.reflector import Reflector
from webhook_operator.kube import (
    ConflictError,
    KubeClient,
    KubeError,
    NotFoundError,
    resource_path,
)
from webhook_operator.logs import log
from webhook_operator.metrics import Metrics

SOURCE_LABEL = "webhooks.openplatform.dev/source"
_STATUS_INTERVAL = 1.0  # seconds between status writes while events flow
_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)  # between failed event creations, then the last, repeated


@dataclass(frozen=True)
class SourceRef:
    namespace: str
    name: str
    uid: str
    generation: int


class SourceRunner:
    def __init__(
        self,
        kube: KubeClient,
        metrics: Metrics,
        source: SourceRef,
        spec: SourceSpec,
        plural: str,
        status: Mapping[str, Any],
        *,
        max_data_bytes: int,
        now: Callable[[], dt.datetime],
    ) -> None:
        self._kube = kube
        self._metrics = metrics
        self._source = source
        self._spec = spec
        self._plural = plural
        self._max_data_bytes = max_data_bytes
        self._now = now
        self._resource = f"{spec.api_version}/{spec.kind}"
        observed = status.get("observedObjects")
        # A record of another kind (the spec changed it) says nothing about this one's objects.
        same_kind = status.get("observedResource") == self._resource
        self.emitted: dict[str, str] = (
            {str(k): str(v) for k, v in observed.items() if v}
            if isinstance(observed, Mapping) and same_kind
            else {}
        )
        self._stale = set(observed) - set(self.emitted) if isinstance(observed, Mapping) else set()
        self._dirty: set[str] = set()
        self._events_emitted = int(status.get("eventsEmitted") or 0)
        self._last_emitted: str | None = status.get("lastEmittedTime")
        self._conditions: list[dict[str, Any]] = list(status.get("conditions") or [])
        self._version = str(status.get("resourceVersion") or "")
        self._pending = Pending()
        self._wake = asyncio.Event()
        self._synced = False
        self._status_due = True
        self._reported_coalesced = 0
        self._failure: str | None = None  # why the last event could not be created, while it lasts

    async def run(self) -> None:
        selector = self._spec.label_selector
        query = f"?labelSelector={urllib.parse.quote(selector, safe='')}" if selector else ""
        reflector = Reflector(
            self._kube,
            self._collection() + query,
            what=f"{self._plural} for source {self._source.namespace}/{self._source.name}",
            observe=self._observe,
            # Waiting states count as known too: gone at a re-LIST, they become deletions.
            known=lambda: [(self._source.namespace, name) for name in {*self.emitted, *self._pending.latest}],
            synced=self._list_done,
        )
        await self._write_status(reconciling=True)  # before the LIST, whose end it must not overwrite
        watching = asyncio.create_task(reflector.run(), name=f"source {self._source.name}")
        try:
            await self._emit_forever()
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching

    # -- the reflector's side --------------------------------------------------------------------

    def _observe(self, event_type_: str, body: Mapping[str, Any]) -> None:
        metadata = body.get("metadata") or {}
        name = str(metadata.get("name", ""))
        self._version = str(metadata.get("resourceVersion") or self._version)
        present = event_type_ != "DELETED"
        if name not in self._pending.latest:
            current = fingerprint(body) if present else None
            if self.emitted.get(name) == current:
                return  # a resync, a status-only or metadata-only update: nothing to announce
        self._pending.put(name, present, body)
        self._wake.set()

    def _list_done(self, version: str) -> None:
        self._version = version or self._version
        self._synced = True
        self._status_due = True
        self._wake.set()

    # -- the emitter -------------------------------------------------------------------------------

    async def _emit_forever(self) -> None:
        interval = 1.0 / self._spec.max_events_per_second
        last_write = 0.0
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending.latest:
                name, present, body = self._pending.take()
                if name not in self.emitted and len(self.emitted) >= MAX_OBSERVED_OBJECTS:
                    await self._write_status(too_many=True)
                    await asyncio.Future()  # parked until a new spec (a narrower selector) restarts it
                current = fingerprint(body) if present else None
                for change in classify(self.emitted.get(name), current):
                    if change in self._spec.on:
                        await self._emit(name, change, body)
                        await asyncio.sleep(interval)  # the per-source cap; meanwhile states coalesce
                if current is None:
                    self.emitted.pop(name, None)
                else:
                    self.emitted[name] = current
                self._dirty.add(name)
                if loop.time() - last_write >= _STATUS_INTERVAL:
                    await self._write_status()
                    last_write = loop.time()
            if self._dirty or self._status_due:
                await self._write_status()
                last_write = loop.time()

    async def _emit(self, name: str, change: Change, body: Mapping[str, Any]) -> None:
        """Create the event, retrying API errors with a backoff (the Ready condition says why)."""
        for failures in itertools.count():
            try:
                await self._create_event(name, change, body)
                if failures:
                    self._failure = None
                return
            except KubeError as error:
                self._failure = f"creating a WebhookEvent failed: {error}"
                log(logging.WARNING, "source could not emit", source=self._source.name, error=str(error))
                if failures == 0:
                    await self._write_status()
                await asyncio.sleep(_BACKOFF[min(failures, len(_BACKOFF) - 1)])

    async def _create_event(self, name: str, change: Change, body: Mapping[str, Any]) -> None:
        spec, source = self._spec, self._source
        metadata = body.get("metadata") or {}
        if change == "Deleted":
            # Named by the state it ends, so the watch and a re-LIST after a restart (which sees
            # no object, only the record) name the same deletion alike.
            version = self.emitted.get(name, "")
            data = (
                event_data(body, max_bytes=self._max_data_bytes)
                if body.get("kind") and metadata.get("uid", "")[:8] == version.split(":")[0]
                else {
                    "apiVersion": spec.api_version,
                    "kind": spec.kind,
                    "metadata": {"name": name, "namespace": source.namespace},
                }
            )
        else:
            version = str(metadata.get("resourceVersion") or "")
            data = event_data(body, max_bytes=self._max_data_bytes)
        event = {
            "apiVersion": GROUP_VERSION,
            "kind": "WebhookEvent",
            "metadata": {
                "name": event_name(source.name, name, change, version),
                "namespace": source.namespace,
                "labels": {SOURCE_LABEL: source.name},
                "ownerReferences": [
                    {
                        "apiVersion": GROUP_VERSION,
                        "kind": "WebhookSource",
                        "name": source.name,
                        "uid": source.uid,
                    }
                ],
            },
            "spec": {
                "type": event_type(spec, change),
                "source": object_path(spec, self._plural, source.namespace, name),
                "data": data,
            },
        }
        try:
            await self._kube.create(resource_path("webhookevents", source.namespace), event)
        except ConflictError:
            return  # created before a restart or a retry: already emitted
        self._events_emitted += 1
        self._last_emitted = format_time(self._now())
        self._metrics.source_events.labels(source.namespace, source.name, change.lower()).inc()

    # -- status ------------------------------------------------------------------------------------

    async def _write_status(self, *, reconciling: bool = False, too_many: bool = False) -> None:
        now = self._now()
        if too_many:
            stalled = Condition(
                "Stalled", "True", "TooManyObjects",
                f"more than {MAX_OBSERVED_OBJECTS} {self._plural} match; narrow spec.selector",
            )  # fmt: skip
            ready = Condition("Ready", "False", "TooManyObjects", stalled.message)
        else:
            stalled = Condition("Stalled", "False", "Watching", "")
            if self._failure is not None:
                ready = Condition("Ready", "False", "EmitFailed", self._failure)
            elif self._synced and not reconciling:
                ready = Condition(
                    "Ready", "True", "Watching", f"watching {self._plural} in {self._source.namespace}"
                )
            else:
                ready = Condition("Ready", "False", "Listing", f"listing {self._plural} to catch up")
        listing = not self._synced or reconciling
        reconcile = Condition(
            "Reconciling", "True" if listing else "False", "Listing" if listing else "CaughtUp", ""
        )
        for condition in (ready, reconcile, stalled):
            self._conditions = upsert_condition(
                self._conditions, condition, now=now, generation=self._source.generation
            )
        status: dict[str, Any] = {
            "observedGeneration": self._source.generation,
            "conditions": self._conditions,
            "eventsEmitted": self._events_emitted,
            "observedObjects": {name: self.emitted.get(name) for name in self._dirty | self._stale},
            "observedResource": self._resource,
        }
        if self._version:
            status["resourceVersion"] = self._version
        if self._last_emitted:
            status["lastEmittedTime"] = self._last_emitted
        coalesced = self._pending.coalesced - self._reported_coalesced
        if coalesced:
            self._metrics.source_coalesced.labels(self._source.namespace, self._source.name).inc(coalesced)
            self._reported_coalesced = self._pending.coalesced
        path = resource_path("webhooksources", self._source.namespace, self._source.name, "status")
        try:
            await self._kube.merge_patch(path, {"status": status})
        except NotFoundError:
            log(logging.INFO, "source gone", source=f"{self._source.namespace}/{self._source.name}")
            return
        self._dirty.clear()
        self._stale.clear()
        self._status_due = False

    def _collection(self) -> str:
        spec = self._spec
        base = f"/apis/{spec.api_version}" if spec.group else f"/api/{spec.version}"
        return f"{base}/namespaces/{self._source.namespace}/{self._plural}"
