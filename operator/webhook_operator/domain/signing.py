"""Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.

Key material never appears in a repr, an exception message or a log line: errors name the
Secret key that is wrong, never its value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field

SECRET_PREFIX = "whsec_"  # noqa: S105 -- the key format prefix, not a key
MIN_KEY_BYTES = 16
MAX_KEY_BYTES = 128


class SigningKeyError(ValueError):
    """A Secret value is not a usable `whsec_` key; the message never contains the value."""


@dataclass(frozen=True)
class SigningKey:
    secret: bytes = field(repr=False)

    def __repr__(self) -> str:
        return "SigningKey(<redacted>)"


def parse_signing_key(value: str | bytes, *, key_name: str) -> SigningKey:
    """Decode a `whsec_<base64>` value taken from Secret key `key_name`."""
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise SigningKeyError(f"Secret key {key_name!r} is not ASCII text") from None
    value = value.strip()
    if not value.startswith(SECRET_PREFIX):
        raise SigningKeyError(f"Secret key {key_name!r} must start with {SECRET_PREFIX!r}")
    encoded = value[len(SECRET_PREFIX) :]
    try:
        secret = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SigningKeyError(
            f"Secret key {key_name!r} is not valid base64 after {SECRET_PREFIX!r}"
        ) from None
    if not MIN_KEY_BYTES <= len(secret) <= MAX_KEY_BYTES:
        raise SigningKeyError(
            f"Secret key {key_name!r} decodes to {len(secret)} bytes; "
            f"use {MIN_KEY_BYTES} to {MAX_KEY_BYTES} random bytes"
        )
    return SigningKey(secret)


def signature(key: SigningKey, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    digest = hmac.new(key.secret, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(keys: Sequence[SigningKey], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one signature per key, space-separated (rotation sends both)."""
    return " ".join(signature(key, msg_id, timestamp, body) for key in keys)
