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

import asyncio
import base64
import collections
import contextlib
import datetime
import functools
import json
import logging
import pathlib
import random
import re
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

import aiohttp
import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
import yaml
import yarl
from kmock._internal import apps, k8s_dicts, references, rendering

from webhook_operator.testing.api_standin_faults import Faults, conflict_message, status_body, status_response

CRDS_DIR = pathlib.Path(__file__).parent.parent / "crds"
CRD_RESOURCE = references.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
_CRD_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # what kube-apiserver draws generateName suffixes from
_SERVER_META = "uid resourceVersion generation creationTimestamp deletionTimestamp deletionGracePeriodSeconds"
# Kubernetes verbs as kmock's actions (kmock has no action for PUT: it gets UPDATE as PATCH does).
_ACTIONS = {action.value.lower(): action for action in kmock.action} | {
    "get": kmock.action.FETCH,
    "patch": kmock.action.UPDATE,
}
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 10x faster on big CRDs
_dumps = functools.partial(json.dumps, separators=(",", ":"))
logger = logging.getLogger(__name__)

Obj = dict[str, Any]
Match = Callable[[Obj], bool]
Lookup = Callable[[Obj, str], str | None]
S = TypeVar("S", bound="ApiStandin")


class StandinError(Exception):
    """A non-2xx answer to one of the helper methods; `body` is the Kubernetes Status."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body.get('message') if isinstance(body, dict) else body}")
        self.status = status
        self.body = body


class _Reject(Exception):
    """Internal control flow: becomes a Status answer with this code."""

    def __init__(self, code: int, message: str, reason: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.reason, self.details = code, message, reason, details


@attrs.define(slots=True)
class _Target:
    """What a resource request addresses, parsed from the URL (kmock's parser misses namespaces)."""

    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None
    verb: str | None  # Kubernetes verb: get list watch create update patch delete deletecollection
    params: Mapping[str, str]  # the query


def _parse_target(method: str, path: str, query: Mapping[str, str]) -> _Target | None:
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None  # discovery or not Kubernetes at all: kmock serves it
    namespace = None
    ns_subresource = group == "" and len(rest) == 3 and rest[2] in ("status", "finalize")
    if rest[0] == "namespaces" and len(rest) >= 3 and not ns_subresource:
        namespace, rest = rest[1], rest[2:]
    name = rest[1] if len(rest) > 1 else None
    watch = query.get("watch") in ("true", "1")
    verb = {
        "GET": "watch" if watch else "get" if name else "list",
        "POST": None if name else "create",
        "PUT": "update" if name else None,
        "PATCH": "patch" if name else None,
        "DELETE": "delete" if name else "deletecollection",
    }.get(method)
    return _Target(group, version, rest[0], namespace, name, "/".join(rest[2:]) or None, verb, query)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, null deletes a key, anything else replaces.

    The result shares values with both arguments (nothing is copied): treat them as read-only.
    """
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


_SEL_SPLIT = re.compile(r",(?![^(]*\))")
_SEL_SET = re.compile(r"^([\w./-]+)\s+(in|notin)\s*\(([^)]*)\)$")
_SEL_CMP = re.compile(r"^(!?)([\w./-]+)\s*(?:(==|=|!=)\s*([\w./-]*))?$")


def _label(obj: Obj, key: str) -> str | None:
    value = (obj.get("metadata") or {}).get("labels", {}).get(key)
    return value if isinstance(value, str) else None


def _field(obj: Obj, path: str) -> str | None:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return None if value is None else str(value)


def _check_set(lookup: Lookup, key: str, values: frozenset[str], positive: bool, obj: Obj) -> bool:
    return (lookup(obj, key) in values) == positive


def _check_exists(lookup: Lookup, key: str, negated: bool, obj: Obj) -> bool:
    return (lookup(obj, key) is not None) != negated


def _check_equal(lookup: Lookup, key: str, value: str, equal: bool, obj: Obj) -> bool:
    return (lookup(obj, key) == value) == equal


def _selector(text: str, lookup: Lookup) -> list[Match]:
    """Compile a label/field selector into predicates; a syntax error is 400 as on a real server."""
    checks: list[Match] = []
    for raw_term in _SEL_SPLIT.split(text):
        term = raw_term.strip()
        if not term:
            continue
        if m := _SEL_SET.match(term):
            values = frozenset(v.strip() for v in m[3].split(","))
            checks.append(functools.partial(_check_set, lookup, m[1], values, m[2] == "in"))
        elif (m := _SEL_CMP.match(term)) and not (m[1] and m[3]):
            negated, key, op, value = bool(m[1]), m[2], m[3], m[4] or ""
            if op is None:
                checks.append(functools.partial(_check_exists, lookup, key, negated))
            else:
                checks.append(functools.partial(_check_equal, lookup, key, value, op != "!="))
        else:
            raise _Reject(400, f"unable to parse requirement: {term!r}")
    return checks


class _Event:
    """One watch event; its JSON line is rendered once, however many watchers stream it."""

    __slots__ = ("_line", "obj", "resource", "rv", "type")

    def __init__(self, rv: int, resource: references.resource, type_: str, obj: Obj) -> None:
        self.rv, self.resource, self.type, self.obj = rv, resource, type_, obj
        self._line: bytes | None = None

    def line(self) -> bytes:
        if self._line is None:
            event = {"type": self.type, "object": self.obj}
            self._line = _dumps(event).encode() + b"\n"
        return self._line


class _Watch:
    __slots__ = ("match", "queue")

    def __init__(self, match: Match) -> None:
        self.match = match
        self.queue: asyncio.Queue[_Event | None] = asyncio.Queue()  # None: end the stream


@attrs.define(slots=True)
class _Endpoint:
    """Quacks like the `kmock.Server` that kmock's `standin.url`/`standin.get(...)` look for."""

    url: yarl.URL
    client: aiohttp.ClientSession


@attrs.define(kw_only=True)
class ApiStandin(kmock.KubernetesEmulator):
    """The stand-in handler; serve it with `serve_api_standin()` (or any aiohttp low-level server)."""

    crds_dir: pathlib.Path | None = None  # None: the package's crds/ (a symlink to the repo's)
    keep_alive: bool = False  # False: `Connection: close` on every answer (kopf's fast shutdown)
    keep_history: bool = False  # True: kmock's per-object version history (memory grows)
    request_history: int = 1000  # requests kept for kmock's `list(standin)`; 0: faster, none kept
    watch_log_size: int = 10_000  # events kept for watches resuming from a resourceVersion

    faults: Faults = attrs.field(factory=Faults, init=False)
    # plural -> seconds: live watch events of that resource arrive this late (a lagging watch)
    watch_lag: dict[str, float] = attrs.field(factory=dict, init=False)
    counts: collections.Counter[tuple[str, str, str]] = attrs.field(factory=collections.Counter, init=False)
    _rv: int = attrs.field(default=0, init=False)
    _served: int = attrs.field(default=0, init=False)
    _log: collections.deque[_Event] = attrs.field(factory=collections.deque, init=False)
    _dropped_rv: int = attrs.field(default=0, init=False)
    _watches: dict[references.resource, set[_Watch]] = attrs.field(init=False)
    # resource -> its stored objects by key: a LIST reads one resource's objects, as the real API
    # server's per-resource watch cache does, not every object of every resource
    _by_resource: dict[references.resource, dict[Any, k8s_dicts.Object]] = attrs.field(init=False)
    _known: dict[tuple[str, str, str], references.resource] = attrs.field(factory=dict, init=False)
    _crds: set[references.resource] = attrs.field(factory=set, init=False)
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
                    {"type": t, "status": "True", "reason": t, "lastTransitionTime": _now()}
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
        target = _parse_target(raw.method, raw.path, raw.query)
        if target is None:  # discovery: kmock's own parsing and answers
            response = await super().__call__(raw)
        else:
            response = await self._answer(raw, target)
        if not self.keep_alive and not response.prepared:
            response.force_close()
        return response

    async def _answer(self, raw: aiohttp.web.BaseRequest, target: _Target) -> aiohttp.web.StreamResponse:
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
                raise _Reject(400, f"the request body is not valid JSON: {e}") from e
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
        except _Reject as e:
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
        target: _Target,
        data: Any,
    ) -> aiohttp.web.StreamResponse:
        info = self.resources[resource]
        verb, namespace, name, sub = target.verb, target.namespace, target.name, target.subresource
        if verb is None:
            raise _Reject(405, f"the server does not allow this method on {self._what(resource, name)}")
        if (info.namespaced and namespace is None and verb not in ("list", "watch", "deletecollection")) or (
            info.namespaced is False and namespace is not None
        ):
            raise _Reject(404, "the server could not find the requested resource")
        if sub is not None and (sub != "status" or sub not in info.subresources):
            raise _Reject(404, "the server could not find the requested resource")
        if sub is not None and verb not in ("get", "patch", "update"):
            raise _Reject(405, f"the server does not allow this method on the {sub} subresource")
        if verb == "watch":
            return await self._watch(raw, resource, target)
        if verb == "list":
            return _json(200, self._list(resource, target))
        if verb == "deletecollection":
            for obj in self._matching(resource, target):
                meta = obj["metadata"]
                self._delete(resource, self._key(resource, meta.get("namespace"), meta["name"]), {})
            return _json(200, status_body(200, "", reason="") | {"status": "Success"})
        if verb == "create":
            return _json(201, self._create(resource, namespace, data))
        assert name is not None  # verbs addressing one object always have a name
        key = self._key(resource, namespace, name)
        if verb == "delete":
            return _json(200, self._delete(resource, key, data or {}))
        old = self._current(key)
        if old is None:
            raise self._reject(404, resource, name, "not found")
        if verb == "get":
            return _json(200, old)
        return _json(200, self._update(resource, key, old, raw.content_type, data, verb, sub))

    # -- storage and events ----------------------------------------------------------------------

    def _resolve_key(self, resource: references.resource) -> references.resource:
        """The canonical resource instance for a served resource (404 for unknown ones)."""
        triple = (resource.group or "", resource.version or "", resource.plural or "")
        if triple not in self._known:
            if resource not in self.resources:
                raise _Reject(404, "the server could not find the requested resource")
            self._known[triple] = resource
        return self._known[triple]

    def _key(self, resource: references.resource, namespace: str | None, name: str) -> Any:
        return (resource, namespace, name)

    def _current(self, key: Any) -> Obj | None:
        obj = self._objects._objects.get(key)
        return None if obj is None or obj.deleted else obj.last.raw

    def _reject(self, code: int, resource: references.resource, name: str, what: str, **kw: Any) -> _Reject:
        """A failure about one object, worded and detailed as kube-apiserver does it."""
        details = {"name": name, "group": resource.group, "kind": resource.plural}
        return _Reject(code, f"{self._what(resource, name)} {what}", **kw, **details)

    def _what(self, resource: references.resource, name: str | None) -> str:
        plural = f"{resource.plural}.{resource.group}" if resource.group else str(resource.plural)
        return f'{plural} "{name}"' if name else plural

    def _commit(self, resource: references.resource, key: Any, type_: str, obj: Obj) -> Obj:
        """Give `obj` (with its own new metadata dict) the next resourceVersion, store, announce."""
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        stored = self._objects._objects.get(key)
        if type_ == "DELETED":
            if self.keep_history and stored is not None:
                stored.history.append(obj)
                stored.delete()
            else:
                self._objects._objects.pop(key, None)
                self._by_resource[key[0]].pop(key, None)
        elif self.keep_history and stored is not None:
            stored.history.append(obj)
        else:
            self._objects._objects[key] = self._by_resource[key[0]][key] = k8s_dicts.Object(obj)
        event = _Event(self._rv, resource, type_, obj)
        if len(self._log) == self._log.maxlen:
            self._dropped_rv = self._log[0].rv
        self._log.append(event)
        for watch in self._watches.get(resource, ()):
            if watch.match(obj):
                watch.queue.put_nowait(event)
        return obj

    def _create(self, resource: references.resource, namespace: str | None, body: Any) -> Obj:
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise _Reject(400, "the body of a create must be a JSON object with object metadata")
        meta = body.get("metadata") or {}
        if meta.get("namespace") not in (None, namespace) and self.resources[resource].namespaced:
            raise _Reject(
                400, "the namespace of the provided object does not match the namespace sent on the request"
            )
        return self._store_new(resource, namespace, body)

    def _store_new(self, resource: references.resource, namespace: str | None, body: Obj) -> Obj:
        info = self.resources[resource]
        meta = {k: v for k, v in (body.get("metadata") or {}).items() if k not in _SERVER_META.split()}
        name = meta.get("name")
        while not name and meta.get("generateName"):
            candidate = meta["generateName"] + "".join(random.choices(_NAME_CHARS, k=5))
            name = None if self._current(self._key(resource, namespace, candidate)) else candidate
        if not name:
            raise _Reject(422, "metadata.name: Required value: name or generateName is required")
        key = self._key(resource, namespace, name)
        if self._current(key) is not None:
            raise self._reject(409, resource, name, "already exists", reason="AlreadyExists")
        meta.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=_now())
        if info.namespaced:
            meta["namespace"] = namespace
        if self._has_generation(resource):
            meta["generation"] = 1
        version = f"{resource.group}/{resource.version}" if resource.group else resource.version
        obj = {"apiVersion": version, "kind": info.kind, **body, "metadata": meta}
        obj.update(apiVersion=version, kind=info.kind)
        if "status" in info.subresources and resource != CRD_RESOURCE:
            obj.pop("status", None)  # a create cannot set the status
        return self._commit(resource, key, "ADDED", obj)

    def _has_generation(self, resource: references.resource) -> bool:
        return resource in self._crds or "status" in self.resources[resource].subresources

    def _update(
        self,
        resource: references.resource,
        key: Any,
        old: Obj,
        content_type: str,
        data: Any,
        verb: str,
        sub: str | None,
    ) -> Obj:
        info = self.resources[resource]
        patched = self._patched(resource, old, content_type, data) if verb == "patch" else data
        if not isinstance(patched, dict) or not isinstance(patched.get("metadata", {}), dict):
            raise _Reject(400, "the object must be a JSON object with object metadata")
        old_meta, meta = old["metadata"], dict(patched.get("metadata") or {})
        rv = meta.get("resourceVersion")
        if verb == "update" and not rv and resource in self._crds:
            raise _Reject(
                422, "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
            )
        if rv and rv != old_meta.get("resourceVersion"):
            raise _Reject(409, conflict_message(self._what(resource, key[2])), reason="Conflict")
        if meta.get("name", key[2]) != key[2]:
            raise _Reject(400, f"the name of the object ({meta['name']}) does not match the name on the URL")
        has_status = "status" in info.subresources
        if sub == "status":  # only .status changes, whatever else the request says
            new = {k: v for k, v in old.items() if k != "status"}
            new["metadata"] = dict(old_meta)
            if "status" in patched:
                new["status"] = patched["status"]
        else:
            new = {k: v for k, v in patched.items() if k != "status" or not has_status}
            if has_status and "status" in old:
                new["status"] = old["status"]
            for field in (*_SERVER_META.split(), "name", "namespace"):
                meta.pop(field, None)
                if field in old_meta:
                    meta[field] = old_meta[field]
            new.update(metadata=meta, apiVersion=old["apiVersion"], kind=old["kind"])
            if old_meta.get("deletionTimestamp") and set(meta.get("finalizers", [])) - set(
                old_meta.get("finalizers", [])
            ):
                raise _Reject(
                    422,
                    "metadata.finalizers: Forbidden: no new finalizers can be added if the "
                    "object is being deleted",
                    reason="Forbidden",
                )
            skipped = ("metadata", "status") if has_status else ("metadata",)
            if "generation" in meta and {k: v for k, v in new.items() if k not in skipped} != {
                k: v for k, v in old.items() if k not in skipped
            }:
                meta["generation"] = old_meta["generation"] + 1
        if new == old:
            return old  # a no-op write: no new resourceVersion, no watch event
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            return self._commit(resource, key, "DELETED", new)  # the last finalizer is gone
        return self._commit(resource, key, "MODIFIED", new)

    def _patched(self, resource: references.resource, old: Obj, content_type: str, data: Any) -> Any:
        if content_type == "application/strategic-merge-patch+json" and resource not in self._crds:
            content_type = "application/merge-patch+json"  # close enough for built-ins we touch
        if content_type == "application/merge-patch+json":
            if not isinstance(data, dict):
                raise _Reject(400, "a merge patch must be a JSON object")
            return merge_patch(old, data)
        if content_type == "application/json-patch+json":
            if not isinstance(data, list) or not all(isinstance(op, dict) for op in data):
                raise _Reject(400, "a JSON patch must be a JSON array of operation objects")
            try:
                return jsonpatch.JsonPatch(data).apply(old)
            except (
                jsonpatch.JsonPatchException,
                jsonpointer.JsonPointerException,
                KeyError,
                TypeError,
                ValueError,
            ) as e:
                raise _Reject(422, f"the JSON patch could not be applied: {e}") from e
        raise _Reject(
            415,
            f"the body of the request was in an unknown format - accepted media types "
            f"include: application/json-patch+json, application/merge-patch+json"
            f"{'' if resource in self._crds else ', application/strategic-merge-patch+json'}"
            f" (got {content_type!r})",
        )

    def _delete(self, resource: references.resource, key: Any, options: Any) -> Obj:
        old = self._current(key)
        if old is None:
            raise self._reject(404, resource, key[2], "not found")
        meta = old["metadata"]
        wanted = options.get("preconditions") or {} if isinstance(options, dict) else {}
        for field in ("uid", "resourceVersion"):
            if wanted.get(field) and wanted[field] != meta.get(field):
                raise _Reject(
                    409,
                    f"Precondition failed: {field} in precondition: {wanted[field]}, "
                    f"{field} in object meta: {meta.get(field)}",
                )
        if meta.get("deletionTimestamp"):
            return old
        new = {**old, "metadata": dict(meta)}
        if meta.get("finalizers"):
            new["metadata"].update(deletionTimestamp=_now(), deletionGracePeriodSeconds=0)
            return self._commit(resource, key, "MODIFIED", new)
        return self._commit(resource, key, "DELETED", new)

    # -- reading: lists and watches ---------------------------------------------------------------

    def _matcher(self, target: _Target) -> Match:
        checks = _selector(target.params.get("labelSelector", ""), _label)
        checks += _selector(target.params.get("fieldSelector", ""), _field)
        if target.namespace:
            checks.append(
                functools.partial(_check_equal, _field, "metadata.namespace", target.namespace, True)
            )
        if target.name:
            checks.append(functools.partial(_check_equal, _field, "metadata.name", target.name, True))
        return lambda obj: all(check(obj) for check in checks)

    def _matching(self, resource: references.resource, target: _Target) -> list[Obj]:
        match = self._matcher(target)
        found = [obj.last.raw for obj in self._by_resource[resource].values() if not obj.deleted]
        return sorted((obj for obj in found if match(obj)), key=_sort_key)

    def _list(self, resource: references.resource, target: _Target) -> Obj:
        items = self._matching(resource, target)
        meta: Obj = {"resourceVersion": str(self._rv)}
        if token := target.params.get("continue"):
            try:
                after = tuple(json.loads(base64.urlsafe_b64decode(token)))
            except ValueError as e:
                raise _Reject(400, "invalid continue token") from e
            items = [obj for obj in items if _sort_key(obj) > after]
        limit = int(text) if (text := target.params.get("limit", "")).isdigit() else 0
        if 0 < limit < len(items):
            cursor = json.dumps(_sort_key(items[limit - 1])).encode()
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
        target: _Target,
    ) -> aiohttp.web.StreamResponse:
        params = target.params
        since = params.get("resourceVersion") or "0"
        timeout = int(text) if (text := params.get("timeoutSeconds", "")).isdigit() else None
        watch = _Watch(self._matcher(target))
        backlog: list[_Event] = []
        if since == "0" or params.get("sendInitialEvents") == "true":  # current state, then changes
            backlog = [_Event(0, resource, "ADDED", obj) for obj in self._matching(resource, target)]
        elif not since.isdigit():
            raise _Reject(400, f"invalid resourceVersion {since!r}")
        elif int(since) < self._dropped_rv:
            expired = status_body(410, f"too old resource version: {since} ({self._dropped_rv + 1})")
            backlog = [_Event(0, resource, "ERROR", expired)]
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
            backlog.append(_Event(0, resource, "BOOKMARK", marker))
        self._watches[resource].add(watch)  # no await since the backlog was taken: no gap
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        if not self.keep_alive:
            response.force_close()
        try:
            await response.prepare(raw)
            for event in backlog:
                await response.write(event.line())
            async with asyncio.timeout(timeout):
                while (live := await watch.queue.get()) is not None:
                    if lag := self.watch_lag.get(resource.plural or ""):
                        await asyncio.sleep(lag)
                    await response.write(live.line())
            await response.write_eof()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            self._watches[resource].discard(watch)
        return response

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


def _sort_key(obj: Obj) -> tuple[str, str]:
    """The order of lists, as etcd keys order them: namespace, then name."""
    return (obj["metadata"].get("namespace") or "", obj["metadata"]["name"])


def _json(code: int, obj: Any) -> aiohttp.web.Response:
    return aiohttp.web.Response(status=code, body=_dumps(obj).encode(), content_type="application/json")


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
