"""Resource specs as frozen dataclasses, or a `SpecProblem` that says what is wrong.

The CRD schema rejects most bad input at admission; these checks repeat the ones the operator
relies on, because a stand-in, an old CRD or a `kubectl replace --validate=false` can still
bring them in, and a bad spec must become a clear condition, never a crash.
"""

from __future__ import annotations

import functools
import json
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from webhook_operator.domain.backoff import DEFAULT_RETRY, RetryPolicy
from webhook_operator.domain.filters import PayloadFilter, compile_filter
from webhook_operator.domain.matching import pattern_problem

Format = Literal["StandardWebhooks", "CloudEvents"]

MAX_URL_LENGTH = 2048
MAX_HEADERS = 32
MAX_HEADER_NAME = 64
MAX_HEADER_VALUE = 1024
MAX_EVENT_TYPES = 64
MAX_EVENT_TYPE_LENGTH = 256
MAX_NAMED_SUBSCRIPTIONS = 100
DEFAULT_MAX_DATA_BYTES = 256 * 1024
TIMEOUT_BOUNDS = (1.0, 60.0)
MAX_ATTEMPTS_BOUNDS = (1, 50)
MAX_DELAY_BOUNDS = (1.0, 86400.0)
MAX_IN_FLIGHT_BOUNDS = (1, 1000)

RESERVED_HEADERS = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
        "connection",
        "user-agent",
    }
)
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True)
class SpecProblem:
    reason: str  # CamelCase, for a condition
    message: str


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str


@dataclass(frozen=True)
class SubscriptionSpec:
    url: str
    event_types: tuple[str, ...] = ()
    paused: bool = False
    format: Format = "StandardWebhooks"
    signing_secret: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = 10.0
    retry: RetryPolicy = DEFAULT_RETRY
    max_in_flight: int = 10
    ca_bundle: SecretKeyRef | None = None
    client_cert_secret: str | None = None
    filter: PayloadFilter | None = None

    @functools.cached_property
    def secret_names(self) -> frozenset[str]:  # read on every delivery: computed once
        names = {
            self.signing_secret,
            self.client_cert_secret,
            self.ca_bundle.name if self.ca_bundle else None,
        }
        return frozenset(name for name in names if name)


@dataclass(frozen=True)
class EventSpec:
    type: str
    data: Mapping[str, Any]
    source: str | None = None
    subscriptions: tuple[str, ...] | None = None
    ttl_seconds_after_finished: int | None = None


class _Invalid(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_subscription_spec(spec: object) -> SubscriptionSpec | SpecProblem:
    try:
        return _parse_subscription(_mapping(spec, "spec"))
    except _Invalid as problem:
        return SpecProblem("InvalidSpec", problem.message)


def parse_event_spec(
    spec: object, *, max_data_bytes: int = DEFAULT_MAX_DATA_BYTES
) -> EventSpec | SpecProblem:
    try:
        parsed = _parse_event(_mapping(spec, "spec"))
    except _Invalid as problem:
        return SpecProblem("InvalidEvent", problem.message)
    try:
        size = len(json.dumps(parsed.data, separators=(",", ":"), ensure_ascii=False).encode())
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON): it cannot go on the wire
        return SpecProblem("InvalidEvent", "spec.data holds a string that is not valid Unicode")
    if size > max_data_bytes:
        return SpecProblem(
            "PayloadTooLarge", f"spec.data is {size} bytes serialized; the limit is {max_data_bytes} bytes"
        )
    return parsed


def url_problem(url: str) -> str | None:
    if len(url) > MAX_URL_LENGTH:
        return f"spec.url is longer than {MAX_URL_LENGTH} characters"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as error:
        return f"spec.url is not a valid URL: {error}"
    if parts.scheme not in ("http", "https"):
        return "spec.url must be an http:// or https:// URL"
    if not parts.hostname:
        return "spec.url has no host"
    if parts.username is not None or parts.password is not None:
        return "spec.url must not carry credentials (user:password@); they would show in status and logs"
    if port == 0:
        return "spec.url has port 0"
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        return "spec.url contains whitespace or control characters"
    return None


def _parse_subscription(spec: Mapping[str, Any]) -> SubscriptionSpec:
    url = _string(spec.get("url"), "spec.url", required=True)
    if (problem := url_problem(url)) is not None:
        raise _Invalid(problem)

    event_types = tuple(
        _string(item, "spec.eventTypes[]", required=True) for item in _list(spec, "eventTypes")
    )
    if len(event_types) > MAX_EVENT_TYPES:
        raise _Invalid(f"spec.eventTypes has more than {MAX_EVENT_TYPES} patterns")
    for pattern in event_types:
        if (problem := pattern_problem(pattern)) is not None:
            raise _Invalid(f"spec.eventTypes: {problem}")

    fmt = spec.get("format", "StandardWebhooks")
    if fmt not in ("StandardWebhooks", "CloudEvents"):
        raise _Invalid("spec.format must be StandardWebhooks or CloudEvents")

    signing = _mapping(spec.get("signing") or {}, "spec.signing")
    signing_secret = _ref_name(signing.get("secretRef"), "spec.signing.secretRef") if signing else None

    policy = _retry(spec["retry"]) if spec.get("retry") is not None else DEFAULT_RETRY

    payload_filter = None
    if spec.get("filter") is not None:
        compiled = compile_filter(_string(spec["filter"], "spec.filter", required=False))
        if isinstance(compiled, str):
            raise _Invalid(compiled)
        payload_filter = compiled

    tls = _mapping(spec.get("tls") or {}, "spec.tls")
    ca_bundle = None
    if tls.get("caBundleSecretRef") is not None:
        ref = _mapping(tls["caBundleSecretRef"], "spec.tls.caBundleSecretRef")
        ca_bundle = SecretKeyRef(
            _ref_name(ref, "spec.tls.caBundleSecretRef"),
            _string(ref.get("key", "ca.crt"), "spec.tls.caBundleSecretRef.key", required=True),
        )
    client_cert = None
    if tls.get("clientCertSecretRef") is not None:
        client_cert = _ref_name(tls["clientCertSecretRef"], "spec.tls.clientCertSecretRef")

    return SubscriptionSpec(
        url=url,
        event_types=event_types,
        paused=_bool(spec.get("paused", False), "spec.paused"),
        format=fmt,
        signing_secret=signing_secret,
        headers=_headers(spec.get("headers") or {}),
        timeout=_number(spec.get("timeoutSeconds", 10), "spec.timeoutSeconds", *TIMEOUT_BOUNDS),
        retry=policy,
        max_in_flight=int(_number(spec.get("maxInFlight", 10), "spec.maxInFlight", *MAX_IN_FLIGHT_BOUNDS)),
        ca_bundle=ca_bundle,
        client_cert_secret=client_cert,
        filter=payload_filter,
    )


def _retry(raw: object) -> RetryPolicy:
    """An explicit `retry`: each field omitted takes the CRD's default (as `retry: {}` does)."""
    retry = _mapping(raw, "spec.retry")
    defaults = RetryPolicy()
    backoff = retry.get("backoff", defaults.backoff)
    if backoff not in ("Exponential", "Linear"):
        raise _Invalid("spec.retry.backoff must be Exponential or Linear")
    initial = _number(
        retry.get("initialDelaySeconds", defaults.initial_delay),
        "spec.retry.initialDelaySeconds",
        0.0,
        86400.0,
    )
    maximum = _number(
        retry.get("maxDelaySeconds", defaults.max_delay), "spec.retry.maxDelaySeconds", *MAX_DELAY_BOUNDS
    )
    if maximum < initial:
        raise _Invalid("spec.retry.maxDelaySeconds must not be less than initialDelaySeconds")
    attempts = _number(
        retry.get("maxAttempts", defaults.max_attempts), "spec.retry.maxAttempts", *MAX_ATTEMPTS_BOUNDS
    )
    return RetryPolicy(max_attempts=int(attempts), backoff=backoff, initial_delay=initial, max_delay=maximum)


def _parse_event(spec: Mapping[str, Any]) -> EventSpec:
    type_ = _string(spec.get("type"), "spec.type", required=True)
    if len(type_) > MAX_EVENT_TYPE_LENGTH:
        raise _Invalid(f"spec.type is longer than {MAX_EVENT_TYPE_LENGTH} characters")
    _encodable(type_, "spec.type")
    if "data" not in spec:
        raise _Invalid("spec.data is required (any JSON object)")
    data = _mapping(spec.get("data"), "spec.data")
    source = spec.get("source")
    if source is not None:
        source = _encodable(_string(source, "spec.source", required=True), "spec.source")
    names: tuple[str, ...] | None = None
    if spec.get("subscriptions"):
        names = tuple(
            _string(item, "spec.subscriptions[]", required=True) for item in _list(spec, "subscriptions")
        )
        if len(names) > MAX_NAMED_SUBSCRIPTIONS:
            raise _Invalid(f"spec.subscriptions names more than {MAX_NAMED_SUBSCRIPTIONS} subscriptions")
    ttl = spec.get("ttlSecondsAfterFinished")
    if ttl is not None:
        ttl = int(_number(ttl, "spec.ttlSecondsAfterFinished", 0, 10**9))
    return EventSpec(
        type=type_, data=data, source=source, subscriptions=names, ttl_seconds_after_finished=ttl
    )


def _headers(raw: object) -> tuple[tuple[str, str], ...]:
    headers = _mapping(raw, "spec.headers")
    if len(headers) > MAX_HEADERS:
        raise _Invalid(f"spec.headers has more than {MAX_HEADERS} entries")
    result = []
    for name, value in headers.items():
        if isinstance(name, str) and len(name) > MAX_HEADER_NAME:
            raise _Invalid(
                f"spec.headers has a header name longer than {MAX_HEADER_NAME} characters "
                f"({name[:MAX_HEADER_NAME]!r}...)"
            )
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise _Invalid(f"spec.headers has an invalid header name {str(name)[:MAX_HEADER_NAME]!r}")
        lowered = name.lower()
        if lowered in RESERVED_HEADERS or lowered.startswith("ce-"):
            raise _Invalid(f"spec.headers must not set {name!r}: the operator sets that header itself")
        text = _string(value, f"spec.headers[{name}]", required=False)
        if len(text) > MAX_HEADER_VALUE:
            raise _Invalid(f"spec.headers[{name}] is longer than {MAX_HEADER_VALUE} characters")
        if any(ch in text for ch in "\r\n\0"):
            raise _Invalid(f"spec.headers[{name}] contains a line break or NUL")
        result.append((name, text))
    return tuple(sorted(result))


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _Invalid(f"{where} must be an object")
    return value


def _list(spec: Mapping[str, Any], key: str) -> list[Any]:
    value = spec.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Invalid(f"spec.{key} must be a list")
    return value


def _string(value: object, where: str, *, required: bool) -> str:
    if not isinstance(value, str) or (required and not value):
        raise _Invalid(f"{where} must be a non-empty string" if required else f"{where} must be a string")
    return value


def _encodable(text: str, where: str) -> str:
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise _Invalid(f"{where} is not valid Unicode (it holds a lone surrogate)") from None
    return text


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"{where} must be true or false")
    return value


def _number(value: object, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"{where} must be a number")
    if not low <= value <= high:
        raise _Invalid(f"{where} must be between {low:g} and {high:g}")
    return float(value)


def _ref_name(ref: object, where: str) -> str:
    return _string(_mapping(ref, where).get("name"), f"{where}.name", required=True)
