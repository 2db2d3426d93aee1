"""Kubernetes Events, so that `kubectl describe` tells the story, rate-limited so a flood of
webhook events never becomes a flood of Kubernetes Events.

Per object and reason at most one Event per `window` seconds (repeats are counted and the next
Event says how many were folded in), and a global budget of `per_second` Events.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from webhook_operator.domain.api import GROUP_VERSION
from webhook_operator.domain.clock import format_time, utcnow
from webhook_operator.kube import KubeClient, KubeError, resource_path
from webhook_operator.logs import log
from webhook_operator.metrics import Metrics

COMPONENT = "webhook-operator"


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    namespace: str
    name: str
    uid: str
    api_version: str = GROUP_VERSION


class EventRecorder:
    def __init__(
        self,
        kube: KubeClient,
        *,
        metrics: Metrics | None = None,
        window: float = 60.0,
        per_second: float = 5.0,
        burst: int = 20,
    ) -> None:
        self._kube = kube
        self._metrics = metrics
        self._window = window
        self._rate = per_second
        self._burst = burst
        self._tokens = float(burst)
        self._refilled = time.monotonic()
        self._last: dict[tuple[str, str], tuple[float, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.posted = 0
        self.suppressed = 0

    def record(self, ref: ObjectRef, reason: str, message: str, *, warning: bool = False) -> None:
        now = time.monotonic()
        key = (ref.uid, reason)
        last, folded = self._last.get(key, (float("-inf"), 0))
        if now - last < self._window or not self._take_token(now) or len(self._tasks) > 100:
            self._last[key] = (last, folded + 1)
            self.suppressed += 1
            return
        if folded:
            message += f" ({folded} similar event(s) folded in)"
        self._last[key] = (now, 0)
        if len(self._last) > 10_000:  # keep memory bounded: forget the oldest half
            for old in sorted(self._last, key=lambda k: self._last[k][0])[:5_000]:
                del self._last[old]
        task = asyncio.get_running_loop().create_task(self._post(ref, reason, message[:1024], warning))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)

    def _take_token(self, now: float) -> bool:
        self._tokens = min(self._burst, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    async def _post(self, ref: ObjectRef, reason: str, message: str, warning: bool) -> None:
        stamp = format_time(utcnow())
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{ref.name[:200]}.", "namespace": ref.namespace},
            "involvedObject": {
                "apiVersion": ref.api_version,
                "kind": ref.kind,
                "name": ref.name,
                "namespace": ref.namespace,
                "uid": ref.uid,
            },
            "reason": reason,
            "message": message,
            "type": "Warning" if warning else "Normal",
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await self._kube.create(resource_path("events", ref.namespace), body)
            self.posted += 1
            if self._metrics is not None:
                self._metrics.api_writes.labels("kubernetes-event").inc()
        except KubeError as error:
            log(20, "could not post a Kubernetes Event", reason=reason, error=str(error)[:200])
