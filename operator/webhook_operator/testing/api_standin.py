"""A Kubernetes API stand-in: kmock's emulator made to behave like kube-apiserver where we rely on it.

Used by the integration and fault tests, `webhook-operator demo` (no cluster) and the benchmark;
production code never imports it. The real kopf operator and our own aiohttp client talk to it
over real HTTP on 127.0.0.1::

    async with serve_api_standin() as standin:          # crds/ of the package by default
        kopf_login = kopf.ConnectionInfo(server=str(standin.url), insecure=True)
        await standin.create("webhooksubscriptions", "shop", {...})
        standin.faults.inject(share=0.2)                 # see api_standin_faults
        standin.cut_watches()                            # kopf must reconnect
        standin.watch_lag["webhooksubscriptions"] = 0.2  # that watch delivers events late
        standin.count("patch", subresource="status")     # API requests by verb/resource/subresource

What kmock 0.8's `KubernetesEmulator` lacks and this class adds (it keeps kmock's discovery,
`standin.objects[...]` assertions and DSL reactions, e.g. `standin["patch"][:1] << 409`, which
answer instead of the emulator and store nothing):

- server-set `uid`, `resourceVersion` (one global counter, bumped on every write, never on a
  no-op), `generation` (bumped when anything outside metadata and status changes),
  `creationTimestamp`, `generateName`; 409 AlreadyExists / Conflict, 404 NotFound as `Status`.
- the status subresource split: writes to `/status` change only `.status`; writes to the main
  resource keep the stored `.status` (when the resource declares the subresource).
- PATCH as merge patch (RFC 7386) and JSON patch (RFC 6902: undecodable 400, failing to apply,
  e.g. a failed `test`, 422 Invalid); strategic merge patch is 415 for custom resources (as a
  real server answers) and a merge patch for built-ins. A stale `metadata.resourceVersion` in
  the patched or PUT object is 409; PUT of a custom resource without one is 422.
- watches resume from `resourceVersion=N` without losing events (a bounded event log; older
  than the log: ERROR 410 Expired, kopf relists), `sendInitialEvents` with the closing bookmark,
  `timeoutSeconds`, label and field selectors (=, ==, !=, in, notin, exists) on lists and
  watches, `limit`/`continue` on lists; `/api/v1/namespaces[/name]` (kmock misparses these).
- discovery of the CRDs in a directory plus kmock's bundled built-ins, and the CRDs themselves
  as `customresourcedefinitions` objects.
- bounded memory and no O(n) scans per request: the request history is a ring
  (`request_history`, 0 skips building kmock's request objects: faster), object history is not
  kept unless `keep_history=True`; requests are counted in `counts` instead.

The shutdown trap: kopf waits up to 5 s at shutdown for every task created after it started.
The server's keep-alive connection tasks count, so every answer carries `Connection: close`
unless `keep_alive=True` (faster; for runs where kopf's shutdown time does not matter). A
pytest-asyncio fixture's teardown runs in such a task too: start and stop kopf in the test's own
task (an async context manager inside the test), or every stop takes 5 s.

Gaps, on purpose: no schema validation or CEL, no admission, RBAC, server-side apply or
managedFields, no namespace existence check, no periodic bookmarks, an object leaving a watch's
label selector is not sent as DELETED, and Events are kept until deleted (no 1 h TTL).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import pathlib
import warnings
from collections.abc import AsyncIterator, Mapping
from typing import Any, TypeVar

import aiohttp
import aiohttp.web
import attrs
import kmock
import yaml
import yarl
from kmock._internal import apps, references, rendering

from webhook_operator.testing.api_standin_faults import Faults, status_body, status_response
from webhook_operator.testing.standin_reads import StandinReads
from webhook_operator.testing.standin_requests import (
    Obj,
    Reject,
    Target,
    json_response,
    parse_target,
    timestamp,
)
from webhook_operator.testing.standin_storage import CRD_RESOURCE

CRDS_DIR = pathlib.Path(__file__).parent.parent / "crds"
_CRD_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
# Kubernetes verbs as kmock's actions (kmock has no action for PUT: it gets UPDATE as PATCH does).
_ACTIONS = {action.value.lower(): action for action in kmock.action} | {
    "get": kmock.action.FETCH,
    "patch": kmock.action.UPDATE,
}
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 10x faster on big CRDs
logger = logging.getLogger(__name__)
S = TypeVar("S", bound="ApiStandin")


class StandinError(Exception):
    """A non-2xx answer to one of the helper methods; `body` is the Kubernetes Status."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body.get('message') if isinstance(body, dict) else body}")
        self.status = status
        self.body = body


@attrs.define(slots=True)
class _Endpoint:
    """Quacks like the `kmock.Server` that kmock's `standin.url`/`standin.get(...)` look for."""

    url: yarl.URL
    client: aiohttp.ClientSession


@attrs.define(kw_only=True)
class ApiStandin(StandinReads):
    """The stand-in handler; serve it with `serve_api_standin()` (or any aiohttp low-level server).

    Storage and watch events are `StandinStorage`'s, lists and watches `StandinReads`'.
    """

    crds_dir: pathlib.Path | None = None  # None: the package's crds/ (a symlink to the repo's)
    request_history: int = 1000  # requests kept for kmock's `list(standin)`; 0: faster, none kept

    faults: Faults = attrs.field(factory=Faults, init=False)
    counts: collections.Counter[tuple[str, str, str]] = attrs.field(factory=collections.Counter, init=False)
    _served: int = attrs.field(default=0, init=False)
    _builtin_reactions: set[int] = attrs.field(factory=set, init=False)

    def __attrs_post_init__(self) -> None:
        # Only kmock's discovery and 404 fallbacks: the emulator's own object serving is replaced.
        kmock.KubernetesScaffold.__attrs_post_init__(self)
        self._builtin_reactions = {id(payload) for payload in self._payloads}
        # kmock's views match a request only while it is in the root's history: keep at least one.
        history: collections.deque[rendering.Request] = collections.deque(maxlen=max(1, self.request_history))
        self._requests = history  # type: ignore[assignment]
        self._log = collections.deque(maxlen=self.watch_log_size)
        self._watches = collections.defaultdict(set)
        self._by_resource = collections.defaultdict(dict)
        with warnings.catch_warnings():  # kmock reads its bundle with a deprecated importlib call
            warnings.simplefilter("ignore", DeprecationWarning)
            self.resources.load_bundled()
        self.load_crds(CRDS_DIR if self.crds_dir is None else self.crds_dir)

    # -- public surface ------------------------------------------------------------------------

    def load_crds(self, directory: pathlib.Path) -> list[references.resource]:
        """Serve every CustomResourceDefinition in `directory/*.yaml` (discovery and the CRD object)."""
        served = []
        for path in sorted(pathlib.Path(directory).glob("*.y*ml")):
            for doc in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER):
                if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec, names = doc["spec"], doc["spec"]["names"]
                for version in spec["versions"]:
                    resource = references.resource(spec["group"], version["name"], names["plural"])
                    self.resources[resource] = references.ResourceInfo(
                        kind=names["kind"],
                        singular=names.get("singular") or names["kind"].lower(),
                        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                        verbs=_CRD_VERBS,
                        shortnames=names.get("shortNames", []),
                        categories=names.get("categories", []),
                        subresources=(version.get("subresources") or {}).keys(),
                    )
                    self._crds.add(resource)
                    served.append(resource)
                conditions = [
                    {"type": t, "status": "True", "reason": t, "lastTransitionTime": timestamp()}
                    for t in ("NamesAccepted", "Established")
                ]
                status = {
                    "conditions": conditions,
                    "acceptedNames": names,
                    "storedVersions": [v["name"] for v in spec["versions"] if v.get("storage")],
                }
                self._store_new(self._resolve_key(CRD_RESOURCE), None, {**doc, "status": status})
        return served

    def resolve(self, name: str) -> references.resource:
        """A served resource by `group/version/plural`, plural, short name, singular or kind."""
        if "/" in name:
            return self._resolve_key(references.resource(name))
        found = [res for res in self.resources if name.lower() in self._names(res)]
        if not found:
            raise LookupError(f"no served resource is named {name!r}")
        # Our CRDs first, then the core group (`events` is both v1 and events.k8s.io/v1).
        return min(found, key=lambda res: (res not in self._crds, res.group != ""))

    def _names(self, resource: references.resource) -> set[str | None]:
        info = self.resources[resource]
        return {resource.plural, info.singular, (info.kind or "").lower(), *info.shortnames}

    def api_path(
        self,
        resource: str,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> str:
        """The API path of a collection or an object, e.g. for plain aiohttp requests."""
        res = self.resolve(resource)
        parts = ["/api/v1" if res.group == "" else f"/apis/{res.group}/{res.version}"]
        parts += [f"namespaces/{namespace}"] if namespace else []
        parts += [p for p in (res.plural, name, subresource) if p]
        return "/".join(parts)

    async def create(self, resource: str, namespace: str | None, body: Mapping[str, Any]) -> Obj:
        """POST an object over HTTP; returns the stored object, raises StandinError on failure."""
        return await self._call("POST", self.api_path(resource, namespace), body)

    async def read(self, resource: str, namespace: str | None, name: str) -> Obj:
        """GET an object over HTTP; raises StandinError (404) when it does not exist."""
        return await self._call("GET", self.api_path(resource, namespace, name))

    async def patch_status(
        self, resource: str, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> Obj:
        """Merge-patch `.status` through the status subresource over HTTP."""
        path = self.api_path(resource, namespace, name, "status")
        return await self._call("PATCH", path, {"status": status}, "application/merge-patch+json")

    def count(self, *verbs: str, resource: str | None = None, subresource: str | None = None) -> int:
        """Requests served so far (fault answers included) by verb, plural, subresource ('' = main)."""
        return sum(
            n
            for (verb, plural, sub), n in self.counts.items()
            if (not verbs or verb in verbs) and resource in (None, plural) and subresource in (None, sub)
        )

    def cut_watches(self) -> int:
        """End every open watch stream now, as an API server restart would; returns how many."""
        watches = [watch for group in self._watches.values() for watch in group]
        for watch in watches:
            watch.queue.put_nowait(None)
        return len(watches)

    @property
    def resource_version(self) -> int:
        """The current global resourceVersion (the last write's)."""
        return self._rv

    @property
    def open_watches(self) -> int:
        return sum(len(group) for group in self._watches.values())

    # -- HTTP entry point -----------------------------------------------------------------------

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        target = parse_target(raw.method, raw.path, raw.query)
        if target is None:  # discovery: kmock's own parsing and answers
            response = await super().__call__(raw)
        else:
            response = await self._answer(raw, target)
        if not self.keep_alive and not response.prepared:
            response.force_close()
        return response

    async def _answer(self, raw: aiohttp.web.BaseRequest, target: Target) -> aiohttp.web.StreamResponse:
        self._served += 1
        self.counts[target.verb or raw.method.lower(), target.plural, target.subresource or ""] += 1
        try:
            resource = self._known.get((target.group, target.version, target.plural))
            if resource is None:
                resource = self._resolve_key(references.resource(target.group, target.version, target.plural))
            body = await raw.read()
            try:
                data = json.loads(body) if body else None
            except ValueError as e:
                raise Reject(400, f"the request body is not valid JSON: {e}") from e
            code = self.faults.draw(
                raw.method, target.plural, target.subresource or "", watch=target.verb == "watch"
            )
            if code is not None:
                return self.faults.response(code, self._what(resource, target.name))
            # kmock's request objects are costly: only for the kept history and DSL reactions.
            reacting = len(self._payloads) > len(self._builtin_reactions)
            if not (self.request_history or reacting):
                return await self._serve(raw, resource, target, data)
            request = rendering.Request(
                id=self._served,
                raw_request=raw,
                url=raw.url,
                method=raw.method,
                params=dict(raw.query),
                headers=dict(raw.headers),
                body=body,
                text=body.decode("utf-8", "replace"),
                data=data,
                action=_ACTIONS.get(target.verb or ""),
                resource=resource,
                namespace=target.namespace,
                name=target.name,
                subresource=target.subresource,
            )
            self._requests.append(request)
            reacted = await self._react(request) if reacting else None
            if reacted is not None:
                return reacted
            return await self._serve(raw, resource, target, data)
        except Reject as e:
            return status_response(e.code, e.message, reason=e.reason, details=e.details or None)
        except Exception as e:
            logger.exception("The API stand-in failed on %s %s", raw.method, raw.path_qs)
            if self._errors:
                self._errors[-1].append(e)
            return status_response(500, f"The API stand-in failed: {e!r}")

    async def _react(self, request: rendering.Request) -> aiohttp.web.StreamResponse | None:
        """Let kmock DSL reactions added by tests answer first (they change no stored state)."""
        for payload in self._payloads:
            if id(payload) in self._builtin_reactions or payload._disabled.is_set():
                continue
            if request in payload._source:
                try:
                    return await payload(request)
                except rendering.ReactionMismatchError:
                    payload._disabled.set()
                except NotImplementedError:
                    pass
        return None

    async def _serve(
        self,
        raw: aiohttp.web.BaseRequest,
        resource: references.resource,
        target: Target,
        data: Any,
    ) -> aiohttp.web.StreamResponse:
        info = self.resources[resource]
        verb, namespace, name, sub = target.verb, target.namespace, target.name, target.subresource
        if verb is None:
            raise Reject(405, f"the server does not allow this method on {self._what(resource, name)}")
        if (info.namespaced and namespace is None and verb not in ("list", "watch", "deletecollection")) or (
            info.namespaced is False and namespace is not None
        ):
            raise Reject(404, "the server could not find the requested resource")
        if sub is not None and (sub != "status" or sub not in info.subresources):
            raise Reject(404, "the server could not find the requested resource")
        if sub is not None and verb not in ("get", "patch", "update"):
            raise Reject(405, f"the server does not allow this method on the {sub} subresource")
        if verb == "watch":
            return await self._watch(raw, resource, target)
        if verb == "list":
            return json_response(200, self._list(resource, target))
        if verb == "deletecollection":
            for obj in self._matching(resource, target):
                meta = obj["metadata"]
                self._delete(resource, self._key(resource, meta.get("namespace"), meta["name"]), {})
            return json_response(200, status_body(200, "", reason="") | {"status": "Success"})
        if verb == "create":
            return json_response(201, self._create(resource, namespace, data))
        assert name is not None  # verbs addressing one object always have a name
        key = self._key(resource, namespace, name)
        if verb == "delete":
            return json_response(200, self._delete(resource, key, data or {}))
        old = self._current(key)
        if old is None:
            raise self._reject(404, resource, name, "not found")
        if verb == "get":
            return json_response(200, old)
        return json_response(200, self._update(resource, key, old, raw.content_type, data, verb, sub))

    # -- helpers over HTTP ----------------------------------------------------------------------

    async def _call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Obj:
        payload = None if body is None else json.dumps(body)
        async with self.request(method, path, data=payload, headers={"Content-Type": content_type}) as rsp:
            answer = await rsp.json(content_type=None)
            if rsp.status >= 400:
                raise StandinError(rsp.status, answer)
            return answer  # type: ignore[no-any-return]

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        # Discovery only (resource requests never get here): skip the emulator's object writes.
        return await apps.RawHandler._handle(self, request)

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        listing = await super()._serve_version(request)
        if isinstance(listing, dict):  # kmock renders the core group's version as "/v1"
            listing["groupVersion"] = listing["groupVersion"].lstrip("/")
        return listing

    def _get_resources(self) -> list[references.resource]:
        # kmock also scans every stored object here, on every discovery request: not needed.
        return kmock.KubernetesScaffold._get_resources(self)


def serve_api_standin(
    crds_dir: pathlib.Path | str | None = None, *, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> contextlib.AbstractAsyncContextManager[ApiStandin]:
    """Serve a new `ApiStandin` over HTTP on `host` (a free port by default) until the block exits.

    `standin.url` is the base URL; `options` are ApiStandin's (keep_alive, keep_history, ...).
    """
    path = None if crds_dir is None else pathlib.Path(crds_dir)
    return serve(ApiStandin(crds_dir=path, **options), host=host, port=port)


@contextlib.asynccontextmanager
async def serve(standin: S, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[S]:
    """Serve a stand-in built by the caller (e.g. a subclass with more faults) until the block exits.

    On exit, open watches are ended first, so the server stops without waiting for them.
    """
    async with standin:
        server = aiohttp.web.Server(standin, handler_cancellation=True, access_log=None)
        runner = aiohttp.web.ServerRunner(server, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = aiohttp.web.TCPSite(runner, host, port, backlog=1024)
            await site.start()
            url = yarl.URL.build(scheme="http", host=host, port=runner.addresses[0][1])
            connector = aiohttp.TCPConnector(force_close=not standin.keep_alive)
            async with aiohttp.ClientSession(base_url=url, connector=connector) as client:
                endpoint = _Endpoint(url=url, client=client)
                standin.servers.append(endpoint)  # type: ignore[arg-type]
                try:
                    yield standin
                finally:
                    standin.servers.remove(endpoint)  # type: ignore[arg-type]
                    standin.cut_watches()
        finally:
            await runner.cleanup()
