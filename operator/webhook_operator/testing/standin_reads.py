"""The API stand-in's reads: lists (selectors, pages) and watches (resume, bookmarks, lag)."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
from collections.abc import Callable

import aiohttp.web
import attrs
from kmock._internal import references

from webhook_operator.testing.api_standin_faults import status_body
from webhook_operator.testing.standin_requests import (
    Match,
    Obj,
    Reject,
    Target,
    Watch,
    WatchEvent,
    check_equal,
    field_of,
    label_of,
    selector,
    sort_key,
)
from webhook_operator.testing.standin_storage import StandinStorage


@attrs.define(kw_only=True)
class StandinReads(StandinStorage):
    keep_alive: bool = False  # False: `Connection: close` on every answer (kopf's fast shutdown)
    # plural -> seconds: live watch events of that resource arrive this late (a lagging watch)
    watch_lag: dict[str, float] = attrs.field(factory=dict, init=False)
    # Called with each event as it is written to a watch stream (the benchmark times them).
    on_watch_write: Callable[[WatchEvent], None] | None = attrs.field(default=None, init=False)

    def _matcher(self, target: Target) -> Match:
        checks = selector(target.params.get("labelSelector", ""), label_of)
        checks += selector(target.params.get("fieldSelector", ""), field_of)
        if target.namespace:
            checks.append(
                functools.partial(check_equal, field_of, "metadata.namespace", target.namespace, True)
            )
        if target.name:
            checks.append(functools.partial(check_equal, field_of, "metadata.name", target.name, True))
        return lambda obj: all(check(obj) for check in checks)

    def _matching(self, resource: references.resource, target: Target) -> list[Obj]:
        match = self._matcher(target)
        found = [obj.last.raw for obj in self._by_resource[resource].values() if not obj.deleted]
        return sorted((obj for obj in found if match(obj)), key=sort_key)

    def _list(self, resource: references.resource, target: Target) -> Obj:
        items = self._matching(resource, target)
        meta: Obj = {"resourceVersion": str(self._rv)}
        if token := target.params.get("continue"):
            try:
                after = tuple(json.loads(base64.urlsafe_b64decode(token)))
            except ValueError as e:
                raise Reject(400, "invalid continue token") from e
            items = [obj for obj in items if sort_key(obj) > after]
        limit = int(text) if (text := target.params.get("limit", "")).isdigit() else 0
        if 0 < limit < len(items):
            cursor = json.dumps(sort_key(items[limit - 1])).encode()
            meta["continue"] = base64.urlsafe_b64encode(cursor).decode()
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        info = self.resources[resource]
        version = f"{resource.group}/{resource.version}" if resource.group else resource.version
        return {"apiVersion": version, "kind": f"{info.kind}List", "metadata": meta, "items": items}

    async def _watch(
        self,
        raw: aiohttp.web.BaseRequest,
        resource: references.resource,
        target: Target,
    ) -> aiohttp.web.StreamResponse:
        params = target.params
        since = params.get("resourceVersion") or "0"
        timeout = int(text) if (text := params.get("timeoutSeconds", "")).isdigit() else None
        watch = Watch(self._matcher(target))
        backlog: list[WatchEvent] = []
        if since == "0" or params.get("sendInitialEvents") == "true":  # current state, then changes
            backlog = [WatchEvent(0, resource, "ADDED", obj) for obj in self._matching(resource, target)]
        elif not since.isdigit():
            raise Reject(400, f"invalid resourceVersion {since!r}")
        elif int(since) < self._dropped_rv:
            expired = status_body(410, f"too old resource version: {since} ({self._dropped_rv + 1})")
            backlog = [WatchEvent(0, resource, "ERROR", expired)]
            watch.queue.put_nowait(None)
        else:
            backlog = [
                e for e in self._log if e.rv > int(since) and e.resource == resource and watch.match(e.obj)
            ]
        if params.get("sendInitialEvents") == "true":
            marker = {
                "kind": self.resources[resource].kind,
                "metadata": {
                    "resourceVersion": str(self._rv),
                    "annotations": {"k8s.io/initial-events-end": "true"},
                },
            }
            backlog.append(WatchEvent(0, resource, "BOOKMARK", marker))
        self._watches[resource].add(watch)  # no await since the backlog was taken: no gap
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        if not self.keep_alive:
            response.force_close()
        try:
            await response.prepare(raw)
            for event in backlog:
                await response.write(event.line())
                if self.on_watch_write is not None:
                    self.on_watch_write(event)
            async with asyncio.timeout(timeout):
                while (live := await watch.queue.get()) is not None:
                    if lag := self.watch_lag.get(resource.plural or ""):
                        await asyncio.sleep(lag)
                    await response.write(live.line())
                    if self.on_watch_write is not None:
                        self.on_watch_write(live)
            await response.write_eof()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            self._watches[resource].discard(watch)
        return response
