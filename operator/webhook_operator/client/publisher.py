"""Publisher and AsyncPublisher: create a WebhookEvent safely, and wait for its deliveries.

Both run the same steps (the pure ones live in checks.py and status.py):

1. check the event before any request (InvalidEventError, nothing created);
2. create it under a name chosen up front: derived from the idempotency key, or random;
3. on 409 AlreadyExists, read what is there: the same event (our own earlier call, or a retry of
   this one whose answer was lost) is success with `created=False`; a different one under the
   same key is a KeyConflictError; a different one under a random name is a chance collision,
   and the event is created under a new name.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from webhook_operator.client.checks import (
    GROUP,
    EventRequest,
    check_event,
    differences,
    random_name,
    same_event,
)
from webhook_operator.client.connection import Connection, connect
from webhook_operator.client.errors import (
    AlreadyExistsError,
    ApiError,
    InvalidEventError,
    KeyConflictError,
    NotFoundError,
    WaitTimeoutError,
)
from webhook_operator.client.status import EventStatus, PublishedEvent, event_status
from webhook_operator.client.transport import DEFAULT_RETRY_SECONDS, AsyncApi, SyncApi, retryable

DEFAULT_WAIT_SECONDS = 60.0
_CREATE_TRIES = 3  # AlreadyExists, then the existing object deleted (its TTL) before we read it


def events_path(namespace: str, name: str | None = None) -> str:
    path = f"/apis/{GROUP}/v1alpha1/namespaces/{namespace}/webhookevents"
    return f"{path}/{name}" if name else path


class Publisher:
    """Publishes WebhookEvents in one namespace. Thread-safe; close it (or use `with`) when done.

    `namespace` defaults to the kubeconfig context's namespace (in a pod: the pod's own);
    `kubeconfig` defaults to `$KUBECONFIG`, then the pod's service account, then `~/.kube/config`.
    Transient API errors (connection errors, 429, 5xx) are retried for up to `retry_seconds`.
    """

    def __init__(
        self,
        namespace: str | None = None,
        kubeconfig: str | os.PathLike[str] | None = None,
        *,
        context: str | None = None,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
    ) -> None:
        connection = connect(kubeconfig, context)
        self.namespace = namespace or connection.default_namespace
        self._api = SyncApi(connection, retry_seconds=retry_seconds)

    def publish(
        self,
        type: str,  # the contract's name, shadowing the builtin here only
        data: Mapping[str, Any],
        *,
        key: str | None = None,
        source: str | None = None,
        subscriptions: Sequence[str] | None = None,
        ttl_seconds: int | None = None,
    ) -> PublishedEvent:
        """Create the event (or find the one this key already made) and say which it is.

        Raises InvalidEventError (bad input, nothing created), KeyConflictError (the key was
        used for a different event) or ApiError (refused, or unreachable after retries).
        """
        request = check_event(
            type, data, key=key, source=source, subscriptions=subscriptions, ttl_seconds=ttl_seconds
        )
        steps = _publishing(request, self.namespace)
        step: _Call | PublishedEvent = next(steps)
        while isinstance(step, _Call):
            try:
                answer = self._api.request(step.method, step.path, body=step.body)
            except ApiError as error:
                step = _throw(steps, error)
            else:
                step = _send(steps, answer)
        return step

    def status(self, name: str) -> EventStatus:
        """The event's status now."""
        return event_status(self._get(name))

    def wait(self, name: str, *, timeout: float = DEFAULT_WAIT_SECONDS) -> EventStatus:
        """Block until the event is Delivered or Failed and return its status.

        Raises WaitTimeoutError (with the last status) after `timeout` seconds, NotFoundError
        when the event does not exist or is deleted before it finishes.
        """
        deadline = time.monotonic() + timeout
        while True:
            current = self._get(name)
            status = event_status(current)
            remaining = deadline - time.monotonic()
            if status.finished:
                return status
            if remaining <= 0:
                raise WaitTimeoutError(status, timeout)
            try:
                for change in self._api.watch(
                    events_path(self.namespace), _watch_params(name, current), seconds=remaining
                ):
                    if (found := _finished(change, name)) is not None:
                        return found
            except ApiError as error:
                if not retryable(error.status):
                    raise
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def close(self) -> None:
        self._api.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, name: str) -> dict[str, Any]:
        try:
            return self._api.request("GET", events_path(self.namespace, name))
        except ApiError as error:
            raise _explained(error, self.namespace) from None


class AsyncPublisher:
    """Publisher's twin for asyncio: the same arguments, checks and results, as coroutines.

    The cluster configuration is read on first use, off the event loop. Close it with
    `await publisher.aclose()` or `async with`.
    """

    def __init__(
        self,
        namespace: str | None = None,
        kubeconfig: str | os.PathLike[str] | None = None,
        *,
        context: str | None = None,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
    ) -> None:
        self._namespace = namespace
        self._kubeconfig = kubeconfig
        self._context = context
        self._retry_seconds = retry_seconds
        self._api: AsyncApi | None = None
        self._connecting = asyncio.Lock()

    async def namespace(self) -> str:
        await self._connected()
        assert self._namespace is not None
        return self._namespace

    async def publish(
        self,
        type: str,
        data: Mapping[str, Any],
        *,
        key: str | None = None,
        source: str | None = None,
        subscriptions: Sequence[str] | None = None,
        ttl_seconds: int | None = None,
    ) -> PublishedEvent:
        """See Publisher.publish."""
        request = check_event(
            type, data, key=key, source=source, subscriptions=subscriptions, ttl_seconds=ttl_seconds
        )
        api = await self._connected()
        steps = _publishing(request, await self.namespace())
        step: _Call | PublishedEvent = next(steps)
        while isinstance(step, _Call):
            try:
                answer = await api.request(step.method, step.path, body=step.body)
            except ApiError as error:
                step = _throw(steps, error)
            else:
                step = _send(steps, answer)
        return step

    async def status(self, name: str) -> EventStatus:
        return event_status(await self._get(name))

    async def wait(self, name: str, *, timeout: float = DEFAULT_WAIT_SECONDS) -> EventStatus:
        """See Publisher.wait."""
        api = await self._connected()
        namespace = await self.namespace()
        status: EventStatus | None = None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    current = await self._get(name)
                    status = event_status(current)
                    if status.finished:
                        return status
                    try:
                        async for change in api.watch(
                            events_path(namespace), _watch_params(name, current), seconds=timeout
                        ):
                            if (found := _finished(change, name)) is not None:
                                return found
                    except ApiError as error:
                        if not retryable(error.status):
                            raise
                        await asyncio.sleep(1.0)
        except TimeoutError:
            if status is None:
                raise ApiError(
                    0, "Timeout", f"webhookevent {name} could not be read within {timeout:g} s"
                ) from None
            raise WaitTimeoutError(status, timeout) from None

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.aclose()

    async def __aenter__(self) -> Self:
        await self._connected()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _connected(self) -> AsyncApi:
        async with self._connecting:
            if self._api is None:
                connection: Connection = await asyncio.to_thread(connect, self._kubeconfig, self._context)
                self._namespace = self._namespace or connection.default_namespace
                self._api = AsyncApi(connection, retry_seconds=self._retry_seconds)
        return self._api

    async def _get(self, name: str) -> dict[str, Any]:
        api = await self._connected()
        namespace = await self.namespace()
        try:
            return await api.request("GET", events_path(namespace, name))
        except ApiError as error:
            raise _explained(error, namespace) from None


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    body: Mapping[str, Any] | None = None


# The publish flow, written once for both publishers: it yields the requests to make and is sent
# their answers (or thrown their errors); Publisher and AsyncPublisher only carry them out.
_Steps = Generator[_Call, dict[str, Any], PublishedEvent]


def _publishing(request: EventRequest, namespace: str) -> _Steps:
    for _ in range(_CREATE_TRIES):
        try:
            created = yield _Call("POST", events_path(namespace), request.manifest(namespace))
            return _published(created, created=True)
        except AlreadyExistsError:
            try:
                existing = yield _Call("GET", events_path(namespace, request.name))
            except NotFoundError:
                continue  # deleted (its TTL) between our create and our read: create again
        except ApiError as error:
            raise _explained(error, namespace) from None
        found = _existing(existing, request)
        if isinstance(found, PublishedEvent):
            return found
        request = found
    raise ApiError(409, "Conflict", f"webhookevent {request.name} kept changing while it was created")


def _send(steps: _Steps, answer: dict[str, Any]) -> _Call | PublishedEvent:
    try:
        return steps.send(answer)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def _throw(steps: _Steps, error: ApiError) -> _Call | PublishedEvent:
    try:
        return steps.throw(error)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def _published(obj: Mapping[str, Any], *, created: bool) -> PublishedEvent:
    metadata = obj.get("metadata") or {}
    return PublishedEvent(
        name=str(metadata.get("name", "")),
        namespace=str(metadata.get("namespace", "")),
        uid=str(metadata.get("uid", "")),
        created=created,
    )


def _existing(existing: Mapping[str, Any], request: EventRequest) -> PublishedEvent | EventRequest:
    """The event already there under the request's name: ours, a key conflict, or a chance clash."""
    if same_event(existing, request):
        return _published(existing, created=False)
    if request.key is None:
        return EventRequest(random_name(str(request.spec["type"])), request.spec, None)
    fields = ", ".join(differences(existing, request)) or "its idempotency-key annotation"
    raise KeyConflictError(
        f"key {request.key!r} was already used for webhookevent {request.name}, which differs in "
        f"{fields}: nothing was published (use a new key for a new event)",
        request.name,
    )


def _watch_params(name: str, current: Mapping[str, Any]) -> dict[str, str]:
    return {
        "fieldSelector": f"metadata.name={name}",
        "resourceVersion": str((current.get("metadata") or {}).get("resourceVersion", "")),
    }


def _finished(change: Mapping[str, Any], name: str) -> EventStatus | None:
    """The status in a watch event if it is final; raises when the event was deleted unfinished."""
    kind = change.get("type")
    if kind not in ("ADDED", "MODIFIED", "DELETED"):
        return None  # BOOKMARK, or ERROR (e.g. 410 Gone): the caller reads the object again
    status = event_status(change.get("object") or {})
    if status.finished:
        return status
    if kind == "DELETED":
        raise NotFoundError(
            404, "NotFound", f"webhookevent {name} was deleted before it was Delivered or Failed"
        )
    return None


def _explained(error: ApiError, namespace: str) -> ApiError | InvalidEventError:
    """The API's answer with what to do about it."""
    if error.status == 422 or (error.status == 400 and error.reason in ("BadRequest", "Invalid")):
        return InvalidEventError(f"the API server refused the event: {error.message}")
    if error.status == 403:
        return ApiError(
            error.status,
            error.reason,
            f"{error.message}. Bind the ClusterRole webhook-operator-publisher to this identity "
            f"in namespace {namespace} (a RoleBinding)",
        )
    if error.status == 404 and "could not find the requested resource" in error.message:
        return ApiError(
            error.status, error.reason, "the WebhookEvent resource is not installed: apply crds/ first"
        )
    return error
