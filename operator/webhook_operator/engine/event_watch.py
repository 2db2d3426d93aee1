"""The WebhookEvent watch: LIST, then WATCH from that version, one task per watched scope.

kopf watches subscriptions and Secrets, not events. kopf hands each watched object to a worker
task of its own, yielding the event loop once per new object; with the delivery workers busy,
one loop iteration took tens of milliseconds, so kopf accepted only some tens of new objects
per second and every new event waited behind the status echoes of retries (seconds of watch
lag under a retry storm, docs/performance.md). Here one task per scope decodes each line and
hands the body to the engine: no task, queue or timer per object, nothing kept per finished
event but the store's tombstone.

The protocol is the one client-go's reflector follows: a paginated LIST gives the state and a
resourceVersion; a WATCH from there brings every change after it; a dropped stream resumes
from the last version seen; `410 Gone` (the version is older than the server keeps) means
LIST again, and objects known but no longer listed were deleted in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from webhook_operator.domain.api import GROUP_VERSION, Plural
from webhook_operator.engine.events import EventKey
from webhook_operator.kube import KubeClient, KubeError, resource_path
from webhook_operator.logs import log

PLURAL = Plural.EVENTS
_PAGE = 500  # LIST page size: bounds the memory of one answer, as client-go's pager does
_SERVER_TIMEOUT = 300  # seconds the server keeps a watch open; it then ends it and we resume
_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)  # between failed LISTs or WATCHes, then the last, repeated

Observe = Callable[[str, Mapping[str, Any]], None]


class EventWatch:
    def __init__(
        self,
        kube: KubeClient,
        namespaces: Iterable[str],
        *,
        observe: Observe,
        known: Callable[[str | None], Iterable[EventKey]],
    ) -> None:
        """`observe(type, body)` gets every change; `known(namespace)` the keys already seen in
        a scope (None: all namespaces), so a re-LIST can tell which of them were deleted."""
        self._kube = kube
        self._scopes: tuple[str | None, ...] = tuple(namespaces) or (None,)
        self._observe = observe
        self._known = known
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(scope), name=f"event watch {scope or '*'}")
            for scope in self._scopes
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _run(self, scope: str | None) -> None:
        version: str | None = None
        failures = 0
        while True:
            try:
                if version is None:
                    version = await self._list(scope)
                version = await self._watch(scope, version)
                failures = 0
            except _Expired:
                log(logging.INFO, "event watch expired; listing again", namespace=scope or "*")
                version = None
            except KubeError as error:
                delay = _BACKOFF[min(failures, len(_BACKOFF) - 1)]
                failures += 1
                log(
                    logging.WARNING if failures > 1 else logging.INFO,
                    "event watch interrupted; resuming",
                    namespace=scope or "*",
                    error=str(error),
                    retry_in=delay,
                )
                if error.status == 410:
                    version = None
                await asyncio.sleep(delay)

    async def _list(self, scope: str | None) -> str:
        """Every event in the scope, in pages of one consistent snapshot; returns its version."""
        base = _collection(scope)
        seen: set[EventKey] = set()
        version, token = "", ""
        while True:
            query = f"?limit={_PAGE}" + (f"&continue={token}" if token else "")
            listing = await self._kube.get(base + query)
            if listing is None:  # the namespace does not exist (yet): nothing to watch but changes
                listing = {"metadata": {}, "items": []}
            metadata = listing.get("metadata") or {}
            version = version or str(metadata.get("resourceVersion", ""))
            for item in listing.get("items") or []:
                meta = item.get("metadata") or {}
                seen.add((str(meta.get("namespace", "")), str(meta.get("name", ""))))
                self._observe("ADDED", item)
            token = str(metadata.get("continue") or "")
            if not token:
                break
        for key in [key for key in self._known(scope) if key not in seen]:
            # Deleted while we were not watching: the engine forgets it as on a DELETED event.
            self._observe("DELETED", {"metadata": {"namespace": key[0], "name": key[1]}})
        return version

    async def _watch(self, scope: str | None, version: str) -> str:
        """Stream changes after `version` until the server ends the stream; returns the last one."""
        query = (
            f"?watch=true&resourceVersion={version}&allowWatchBookmarks=true&timeoutSeconds={_SERVER_TIMEOUT}"
        )
        stream = self._kube.watch(_collection(scope) + query, read_timeout=_SERVER_TIMEOUT + 60)
        async with contextlib.aclosing(stream):
            async for event in stream:
                event_type = str(event.get("type", ""))
                body = event.get("object")
                if not isinstance(body, Mapping):
                    continue
                if event_type == "ERROR":
                    if body.get("code") == 410:
                        raise _Expired()
                    code, reason = int(body.get("code") or 0), str(body.get("reason", ""))
                    raise KubeError(code, reason, str(body.get("message", "")))
                version = str((body.get("metadata") or {}).get("resourceVersion", "")) or version
                if event_type in ("ADDED", "MODIFIED", "DELETED"):
                    self._observe(event_type, body)
        return version


class _Expired(Exception):
    """The watch's resourceVersion is older than the server keeps: LIST again."""


def _collection(scope: str | None) -> str:
    return f"/apis/{GROUP_VERSION}/{PLURAL}" if scope is None else resource_path(PLURAL, scope)
