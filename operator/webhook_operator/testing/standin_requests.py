"""Requests to the API stand-in: what they address, their selectors, their failures, watch events.

Plain helpers the stand-in's layers share (`api_standin`, `standin_storage`, `standin_reads`).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp.web
import attrs
from kmock._internal import references

dumps = functools.partial(json.dumps, separators=(",", ":"))

Obj = dict[str, Any]
Match = Callable[[Obj], bool]
Lookup = Callable[[Obj, str], str | None]


class Reject(Exception):
    """Internal control flow: becomes a Status answer with this code."""

    def __init__(self, code: int, message: str, reason: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.reason, self.details = code, message, reason, details


@attrs.define(slots=True)
class Target:
    """What a resource request addresses, parsed from the URL (kmock's parser misses namespaces)."""

    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None
    verb: str | None  # Kubernetes verb: get list watch create update patch delete deletecollection
    params: Mapping[str, str]  # the query


def parse_target(method: str, path: str, query: Mapping[str, str]) -> Target | None:
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
    return Target(group, version, rest[0], namespace, name, "/".join(rest[2:]) or None, verb, query)


def timestamp() -> str:
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


def label_of(obj: Obj, key: str) -> str | None:
    value = (obj.get("metadata") or {}).get("labels", {}).get(key)
    return value if isinstance(value, str) else None


def field_of(obj: Obj, path: str) -> str | None:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return None if value is None else str(value)


def check_set(lookup: Lookup, key: str, values: frozenset[str], positive: bool, obj: Obj) -> bool:
    return (lookup(obj, key) in values) == positive


def check_exists(lookup: Lookup, key: str, negated: bool, obj: Obj) -> bool:
    return (lookup(obj, key) is not None) != negated


def check_equal(lookup: Lookup, key: str, value: str, equal: bool, obj: Obj) -> bool:
    return (lookup(obj, key) == value) == equal


def selector(text: str, lookup: Lookup) -> list[Match]:
    """Compile a label/field selector into predicates; a syntax error is 400 as on a real server."""
    checks: list[Match] = []
    for raw_term in _SEL_SPLIT.split(text):
        term = raw_term.strip()
        if not term:
            continue
        if m := _SEL_SET.match(term):
            values = frozenset(v.strip() for v in m[3].split(","))
            checks.append(functools.partial(check_set, lookup, m[1], values, m[2] == "in"))
        elif (m := _SEL_CMP.match(term)) and not (m[1] and m[3]):
            negated, key, op, value = bool(m[1]), m[2], m[3], m[4] or ""
            if op is None:
                checks.append(functools.partial(check_exists, lookup, key, negated))
            else:
                checks.append(functools.partial(check_equal, lookup, key, value, op != "!="))
        else:
            raise Reject(400, f"unable to parse requirement: {term!r}")
    return checks


class WatchEvent:
    """One watch event; its JSON line is rendered once, however many watchers stream it."""

    __slots__ = ("_line", "obj", "resource", "rv", "type")

    def __init__(self, rv: int, resource: references.resource, type_: str, obj: Obj) -> None:
        self.rv, self.resource, self.type, self.obj = rv, resource, type_, obj
        self._line: bytes | None = None

    def line(self) -> bytes:
        if self._line is None:
            event = {"type": self.type, "object": self.obj}
            self._line = dumps(event).encode() + b"\n"
        return self._line


class Watch:
    __slots__ = ("match", "queue")

    def __init__(self, match: Match) -> None:
        self.match = match
        self.queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()  # None: end the stream


def sort_key(obj: Obj) -> tuple[str, str]:
    """The order of lists, as etcd keys order them: namespace, then name."""
    return (obj["metadata"].get("namespace") or "", obj["metadata"]["name"])


def json_response(code: int, obj: Any) -> aiohttp.web.Response:
    return aiohttp.web.Response(status=code, body=dumps(obj).encode(), content_type="application/json")
