"""Leader election on a `coordination.k8s.io/v1` Lease: the I/O around domain/leadership.py.

`LeaderElector.acquire()` returns once this process holds the Lease; `hold()` renews it until
it can no longer (then returns the grace left for attempts in flight); `release()` clears the
holder so a standby takes over at once, as client-go's `ReleaseOnCancel` does. Every write is a
JSON patch guarded by a test of `metadata.resourceVersion` (or a create), so two candidates
can never both believe their write won.

A standby does not only poll: between tries it watches its Lease, so a release wakes it at
once instead of after up to `retry_period * 2.2` (a SIGTERM handover's whole gap otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import socket
import time
import uuid
from collections.abc import Mapping
from typing import Any

from webhook_operator.config import LeaderElection
from webhook_operator.domain.leadership import (
    LeaseRecord,
    Observation,
    claim,
    held_by_another,
    next_try_in,
    observe,
    released,
)
from webhook_operator.kube import ConflictError, KubeClient, KubeError
from webhook_operator.logs import log

LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
_RELEASE_TIMEOUT = 3.0  # a shutdown does not wait longer for an API server that does not answer


def default_identity() -> str:
    """The pod's name (its hostname) and a random suffix, as controller-runtime builds it."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


class LeaderElector:
    def __init__(self, kube: KubeClient, settings: LeaderElection) -> None:
        self._kube = kube
        self._settings = settings
        self._timings = settings.timings
        self._collection = LEASES.format(namespace=settings.namespace)
        self._path = f"{self._collection}/{settings.name}"
        self._observed: Observation | None = None
        self._version: str | None = None  # resourceVersion of the Lease last read
        self.leading = False

    async def acquire(self) -> float:
        """Campaign until this process holds the Lease; returns when (monotonic) it got it."""
        logged = False
        while True:
            started = time.monotonic()
            try:
                if await self._try_acquire_or_renew():
                    self.leading = True
                    log(logging.INFO, "leader election: acquired the lease", **self._fields())
                    return started
            except KubeError as error:
                if error.status == 403:  # retried: granting the Role lets it go on without a restart
                    log(
                        logging.ERROR,
                        "leader election: this account may not get, create or patch the lease; grant it "
                        "the Role of deploy/base/leader-election.yaml in that namespace",
                        error=str(error),
                        **self._fields(),
                    )
                else:
                    log(logging.WARNING, "leader election: cannot read or write the lease", error=str(error))
            if not logged and self._observed is not None:
                log(logging.INFO, "leader election: standing by", holder=self._observed.record.holder)
                logged = True
            await self._pause()

    async def hold(self, renewed_at: float) -> float:
        """Renew every `retry_period` until the renew deadline passes without success, or another
        process is seen holding the Lease; returns the grace left for attempts in flight."""
        timings = self._timings
        while True:
            await asyncio.sleep(max(0.0, renewed_at + timings.retry_period - time.monotonic()))
            while True:
                started = time.monotonic()
                budget = renewed_at + timings.renew_deadline - started
                ok, lost_to_another = False, False
                try:
                    async with asyncio.timeout(max(0.0, budget)):  # never wait past the deadline
                        ok = await self._try_acquire_or_renew()
                    lost_to_another = not ok and self._held_by_another()
                except (KubeError, TimeoutError) as error:
                    log(logging.WARNING, "leader election: renewal failed", error=str(error) or "timeout")
                if ok:
                    renewed_at = started
                    break
                now = time.monotonic()
                if lost_to_another or timings.must_stop(renewed_at, now):
                    self.leading = False
                    grace = timings.stop_grace(renewed_at, now)
                    holder = self._observed.record.holder if self._observed else ""
                    log(
                        logging.ERROR, "leader election: lost the lease", holder=holder, grace=round(grace, 1)
                    )
                    return grace
                await asyncio.sleep(
                    min(timings.retry_period, max(0.0, renewed_at + timings.renew_deadline - now))
                )

    async def release(self) -> None:
        """Step down: clear the holder so a standby need not wait for the lease to expire."""
        if not self.leading:
            return
        self.leading = False
        try:
            async with asyncio.timeout(_RELEASE_TIMEOUT):
                body = await self._kube.get(self._path)
                record = _record(body) if body is not None else None
                if body is None or record is None or record.holder != self._settings.identity:
                    return
                await self._write(_version(body), released(record, _wall_now()))
            log(logging.INFO, "leader election: released the lease", **self._fields())
        except (KubeError, TimeoutError) as error:
            log(
                logging.WARNING, "leader election: could not release the lease", error=str(error) or "timeout"
            )

    async def _try_acquire_or_renew(self) -> bool:
        """One round of client-go's tryAcquireOrRenew; ConflictError means someone else won."""
        settings = self._settings
        body = await self._kube.get(self._path)
        now = time.monotonic()
        if body is None:
            record = claim(None, settings.identity, self._timings, _wall_now())
            try:
                created = await self._kube.create(self._collection, _lease(settings, record))
            except ConflictError:
                return False
            self._remember(created, now)
            return True
        current = _record(body) or LeaseRecord()
        self._observed = observe(self._observed, current, now)
        self._version = _version(body)
        if held_by_another(self._observed, settings.identity, now):
            return False
        try:
            written = await self._write(
                self._version, claim(current, settings.identity, self._timings, _wall_now())
            )
        except ConflictError:
            return False
        self._remember(written, now)
        return True

    async def _write(self, version: str, record: LeaseRecord) -> dict[str, Any]:
        return await self._kube.json_patch(
            self._path,
            [
                {"op": "test", "path": "/metadata/resourceVersion", "value": version},
                {"op": "add", "path": "/spec", "value": _spec(record)},
            ],
        )

    def _held_by_another(self) -> bool:
        return self._observed is not None and self._observed.record.holder not in (
            "",
            self._settings.identity,
        )

    def _remember(self, body: Mapping[str, Any], now: float) -> None:
        record = _record(body)
        if record is not None:
            self._observed = Observation(record, now)
        self._version = _version(body)

    async def _pause(self) -> None:
        """Wait a jittered retry period (no longer than until the holder's lease expires), or
        less if the Lease is released or deleted meanwhile. The watch also times each renewal
        as it happens, so a dead holder's lease expires on our clock `lease_duration` after its
        last renewal, not after our next read of it."""
        now = time.monotonic()
        deadline = now + next_try_in(self._observed, self._timings, now, random.random())
        if self._version is not None:
            query = (
                f"?watch=true&fieldSelector=metadata.name%3D{self._settings.name}"
                f"&resourceVersion={self._version}&timeoutSeconds=10"
            )
            with contextlib.suppress(KubeError, TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    stream = self._kube.watch(self._collection + query, read_timeout=15)
                    async with contextlib.aclosing(stream):
                        async for event in stream:
                            body = event.get("object")
                            if event.get("type") == "DELETED":
                                return
                            record = _record(body) if isinstance(body, Mapping) else None
                            if record is None:
                                continue
                            if not record.holder:
                                return
                            self._observed = observe(self._observed, record, time.monotonic())
                            assert isinstance(body, Mapping)
                            self._version = _version(body)
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))

    def _fields(self) -> dict[str, str]:
        return {
            "lease": f"{self._settings.namespace}/{self._settings.name}",
            "identity": self._settings.identity,
        }


def _record(body: Mapping[str, Any]) -> LeaseRecord | None:
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        return None
    return LeaseRecord(
        holder=str(spec.get("holderIdentity") or ""),
        lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        acquire_time=spec.get("acquireTime"),
        renew_time=spec.get("renewTime"),
        transitions=int(spec.get("leaseTransitions") or 0),
    )


def _spec(record: LeaseRecord) -> dict[str, Any]:
    return {
        "holderIdentity": record.holder or None,
        "leaseDurationSeconds": record.lease_duration_seconds,
        "acquireTime": record.acquire_time,
        "renewTime": record.renew_time,
        "leaseTransitions": record.transitions,
    }


def _lease(settings: LeaderElection, record: LeaseRecord) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": settings.name, "namespace": settings.namespace},
        "spec": _spec(record),
    }


def _version(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("resourceVersion", ""))


def _wall_now() -> str:
    """A MicroTime, as the Lease's time fields are typed."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
