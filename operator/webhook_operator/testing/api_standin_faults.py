"""Failure answers of the Kubernetes API stand-in: `Status` bodies and injected faults.

Test and benchmark support only (see `api_standin`); production code never imports it.

A real kube-apiserver answers every failure with a `v1 Status` object; clients (kopf, our own
`kube.py`) read `code`, `reason` and `details.retryAfterSeconds` from it. `status_response` builds
that body. `Faults` answers a share of the requests with such a failure *instead of* serving
them, so the request has no effect, as when a real server sheds load (429), breaks (500, 503)
or loses an optimistic-concurrency race (409)::

    standin.faults.inject(share=0.2, statuses=(429, 500, 503, 409), retry_after=1,
                          methods={"PATCH", "POST"}, seed=7)
    ...
    standin.faults.clear()
    assert standin.faults.injected[429] > 0
"""

from __future__ import annotations

import collections
import json
import random
from collections.abc import Collection, Mapping
from typing import Any

import aiohttp.web

# The reason a real API server puts into the Status body for each code (metav1.StatusReason).
REASONS: Mapping[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_body(
    code: int, message: str, *, reason: str | None = None, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A `v1 Status` failure object as kube-apiserver sends it (also inside watch ERROR events)."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details:
        body["details"] = dict(details)
    return body


def status_response(
    code: int,
    message: str,
    *,
    reason: str | None = None,
    details: Mapping[str, Any] | None = None,
    retry_after: int | None = None,
) -> aiohttp.web.Response:
    """An HTTP response carrying `status_body`; `Retry-After` (seconds) when given."""
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
        details = {**(details or {}), "retryAfterSeconds": retry_after}
    body = status_body(code, message, reason=reason, details=details)
    return aiohttp.web.Response(
        status=code, body=json.dumps(body).encode(), content_type="application/json", headers=headers
    )


def conflict_message(what: str) -> str:
    """The 409 message kube-apiserver gives when a write carries a stale resourceVersion."""
    return (
        f"Operation cannot be fulfilled on {what}: the object has been modified; "
        "please apply your changes to the latest version and try again"
    )


class Faults:
    """Answer a deterministic share of matching requests with an error, without applying them.

    Off until `inject()` is called. Matching is by HTTP method, resource plural and subresource
    (`""` is the main resource); watch requests are spared unless `watches=True` (a failed watch
    start is a different fault from a cut stream, see `ApiStandin.cut_watches`). With the same
    seed and the same order of requests the same requests fail.
    """

    def __init__(self) -> None:
        self.share = 0.0
        self.statuses: tuple[int, ...] = ()
        self.retry_after: int | None = None
        self.methods: frozenset[str] = frozenset()
        self.resources: frozenset[str] | None = None
        self.subresources: frozenset[str] | None = None
        self.watches = False
        self.injected: collections.Counter[int] = collections.Counter()
        self._random = random.Random(0)

    def inject(
        self,
        share: float,
        statuses: Collection[int] = (429, 500, 503, 409),
        *,
        retry_after: int | None = 1,
        methods: Collection[str] = ("POST", "PUT", "PATCH", "DELETE"),
        resources: Collection[str] | None = None,
        subresources: Collection[str] | None = None,
        watches: bool = False,
        seed: int = 0,
    ) -> None:
        """Fail `share` (0..1) of matching requests with a status drawn from `statuses`.

        `retry_after` is sent (header and `details.retryAfterSeconds`) with 429 and 503 answers.
        `resources` are plurals (e.g. `{"webhookevents"}`), `subresources` e.g. `{"status"}` or
        `{""}`; `None` matches all. Calling it again replaces the previous settings.
        """
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share must be within 0..1, got {share!r}")
        if share and not statuses:
            raise ValueError("statuses must not be empty")
        self.share = share
        self.statuses = tuple(statuses)
        self.retry_after = retry_after
        self.methods = frozenset(method.upper() for method in methods)
        self.resources = None if resources is None else frozenset(resources)
        self.subresources = None if subresources is None else frozenset(subresources)
        self.watches = watches
        self._random = random.Random(seed)

    def clear(self) -> None:
        """Stop injecting faults (the `injected` counts are kept)."""
        self.share = 0.0

    def draw(self, method: str, resource: str, subresource: str, *, watch: bool) -> int | None:
        """The status to fail this request with, or None to serve it normally."""
        if not self.share or (watch and not self.watches) or method not in self.methods:
            return None
        if self.resources is not None and resource not in self.resources:
            return None
        if self.subresources is not None and subresource not in self.subresources:
            return None
        if self._random.random() >= self.share:
            return None
        code = self._random.choice(self.statuses)
        self.injected[code] += 1
        return code

    def response(self, code: int, what: str) -> aiohttp.web.Response:
        """The answer for an injected fault `code` on `what` (e.g. `webhookevents "e1"`)."""
        messages = {
            409: conflict_message(what),
            429: "Too many requests, please try again later (injected fault).",
            500: "Internal error occurred (injected fault).",
            503: "The server is currently unable to handle the request (injected fault).",
        }
        retry_after = self.retry_after if code in (429, 503) else None
        message = messages.get(code, f"Injected fault {code}.")
        return status_response(code, message, retry_after=retry_after)
