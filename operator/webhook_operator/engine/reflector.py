"""LIST, then WATCH from that version: one collection kept in step, as client-go's reflector does.

A paginated LIST gives the state and a resourceVersion; a WATCH from there brings every change
after it; a dropped stream resumes from the last version seen; `410 Gone` (the version is older
than the server keeps) means LIST again, and objects known but no longer listed were deleted
in between. Each watch event is handed to `observe` as it is decoded: no task, queue or timer
per object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from webhook_operator.kube import KubeClient, KubeError
from webhook_operator.logs import log

_PAGE = 500  # LIST page size: bounds the memory of one answer, as client-go's pager does
_SERVER_TIMEOUT = 300  # seconds the server keeps a watch open; it then ends it and we resume
_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)  # between failed LISTs or WATCHes, then the last, repeated

Observe = Callable[[str, Mapping[str, Any]], None]
ObjectName = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects


class Reflector:
    def __init__(
        self,
        kube: KubeClient,
        collection: str,
        *,
        what: str,
        observe: Observe,
        known: Callable[[], Iterable[ObjectName]],
        on_listed: Callable[[], None] = lambda: None,
        synced: Callable[[str], None] | None = None,
    ) -> None:
        """`collection` is the API path to list and watch (it may carry a query, such as a
        labelSelector); `known()` the objects already seen there, so a re-LIST can tell which of
        them were deleted while nobody watched; `on_listed()` hears when a LIST is complete
        (everything in the collection observed), and `synced(version)` the version it reached."""
        self._kube = kube
        self._collection = collection
        self._what = what
        self._observe = observe
        self._known = known
        self._on_listed = on_listed
        self._synced = synced
        self._separator = "&" if "?" in collection else "?"

    async def run(self) -> None:
        version: str | None = None
        failures = 0
        while True:
            try:
                if version is None:
                    version = await self._list()
                    if self._synced is not None:
                        self._synced(version)
                version = await self._watch(version)
                failures = 0
            except _Expired:
                log(logging.INFO, "watch expired; listing again", watch=self._what)
                version = None
            except KubeError as error:
                delay = _BACKOFF[min(failures, len(_BACKOFF) - 1)]
                failures += 1
                log(
                    logging.WARNING if failures > 1 else logging.INFO,
                    "watch interrupted; resuming",
                    watch=self._what,
                    error=str(error),
                    retry_in=delay,
                )
                if error.status == 410:
                    version = None
                await asyncio.sleep(delay)

    async def _list(self) -> str:
        """Every object in the collection, in pages of one consistent snapshot; returns its version."""
        seen: set[ObjectName] = set()
        version, token = "", ""
        while True:
            query = f"{self._separator}limit={_PAGE}" + (f"&continue={token}" if token else "")
            listing = await self._kube.get(self._collection + query)
            if listing is None:  # the namespace does not exist (yet): nothing to watch but changes
                listing = {"metadata": {}, "items": []}
            metadata = listing.get("metadata") or {}
            version = version or str(metadata.get("resourceVersion", ""))
            for item in listing.get("items") or []:
                seen.add(object_name(item))
                self._observe("ADDED", item)
            token = str(metadata.get("continue") or "")
            if not token:
                break
        for namespace, name in [key for key in self._known() if key not in seen]:
            self._observe("DELETED", {"metadata": {"namespace": namespace, "name": name}})
        self._on_listed()
        return version

    async def _watch(self, version: str) -> str:
        """Stream changes after `version` until the server ends the stream; returns the last one."""
        query = self._separator + (
            f"watch=true&resourceVersion={version}&allowWatchBookmarks=true&timeoutSeconds={_SERVER_TIMEOUT}"
        )
        stream = self._kube.watch(self._collection + query, read_timeout=_SERVER_TIMEOUT + 60)
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


def object_name(body: Mapping[str, Any]) -> ObjectName:
    metadata = body.get("metadata") or {}
    return str(metadata.get("namespace", "")), str(metadata.get("name", ""))


class _Expired(Exception):
    """The watch's resourceVersion is older than the server keeps: LIST again."""
