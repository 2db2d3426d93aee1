"""Standard Webhooks signatures over `{id}.{timestamp}.{body}`, symmetric or asymmetric.

- `whsec_<base64>`: HMAC-SHA256, header entry `v1,<base64 digest>`. The spec asks for at least
  24 random bytes; shorter keys are refused.
- `whsk_<base64 32-byte ed25519 seed>`: ed25519 (the `cryptography` library), header entry
  `v1a,<base64 signature>`; receivers verify with the public key `whpk_<base64 32 bytes>`,
  published in the subscription's `status.signing.publicKeys`.

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

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SECRET_PREFIX = "whsec_"  # noqa: S105 -- the key format prefix, not a key
ASYMMETRIC_SECRET_PREFIX = "whsk_"  # noqa: S105 -- the key format prefix, not a key
PUBLIC_KEY_PREFIX = "whpk_"
# The Standard Webhooks minimum for symmetric keys (192 bits). The maximum is ours: generous, so
# that no key accepted before the minimum was raised is refused for its length now.
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 128
ED25519_SEED_BYTES = 32


class SigningKeyError(ValueError):
    """A Secret value is not a usable key; the message never contains the value."""


@dataclass(frozen=True)
class HmacKey:
    """A symmetric `whsec_` key: the receiver holds the same secret."""

    secret: bytes = field(repr=False)

    def __repr__(self) -> str:
        return "HmacKey(<redacted>)"


@dataclass(frozen=True)
class Ed25519Key:
    """An asymmetric `whsk_` key: the receiver holds only `public_key`."""

    seed: bytes = field(repr=False)
    public_key: str = field(init=False)  # "whpk_<base64>", derived once
    _private: Ed25519PrivateKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        private = Ed25519PrivateKey.from_private_bytes(self.seed)
        raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        object.__setattr__(self, "_private", private)
        object.__setattr__(self, "public_key", PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode("ascii"))

    def __repr__(self) -> str:
        return f"Ed25519Key(<redacted>, public_key={self.public_key!r})"

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)


SigningKey = HmacKey | Ed25519Key


def parse_signing_key(value: str | bytes, *, key_name: str) -> SigningKey:
    """Decode a `whsec_<base64>` or `whsk_<base64>` value taken from Secret key `key_name`."""
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise SigningKeyError(f"Secret key {key_name!r} is not ASCII text") from None
    value = value.strip()
    if value.startswith(ASYMMETRIC_SECRET_PREFIX):
        seed = _decode(value, ASYMMETRIC_SECRET_PREFIX, key_name)
        if len(seed) != ED25519_SEED_BYTES:
            raise SigningKeyError(
                f"Secret key {key_name!r} decodes to {len(seed)} bytes; a {ASYMMETRIC_SECRET_PREFIX!r} "
                f"key is the {ED25519_SEED_BYTES}-byte ed25519 private key (seed)"
            )
        return Ed25519Key(seed)
    if not value.startswith(SECRET_PREFIX):
        raise SigningKeyError(
            f"Secret key {key_name!r} must start with {SECRET_PREFIX!r} (HMAC) "
            f"or {ASYMMETRIC_SECRET_PREFIX!r} (ed25519)"
        )
    secret = _decode(value, SECRET_PREFIX, key_name)
    if len(secret) < MIN_KEY_BYTES:
        raise SigningKeyError(
            f"Secret key {key_name!r} decodes to {len(secret)} bytes; Standard Webhooks requires "
            f"symmetric keys of at least {MIN_KEY_BYTES} random bytes (use 32)"
        )
    if len(secret) > MAX_KEY_BYTES:
        raise SigningKeyError(
            f"Secret key {key_name!r} decodes to {len(secret)} bytes; use {MIN_KEY_BYTES} to "
            f"{MAX_KEY_BYTES} random bytes"
        )
    return HmacKey(secret)


def _decode(value: str, prefix: str, key_name: str) -> bytes:
    encoded = value[len(prefix) :]
    try:
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SigningKeyError(f"Secret key {key_name!r} is not valid base64 after {prefix!r}") from None


def signature(key: SigningKey, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    if isinstance(key, Ed25519Key):
        return "v1a," + base64.b64encode(key.sign(signed)).decode("ascii")
    digest = hmac.new(key.secret, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(keys: Sequence[SigningKey], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one signature per key, space-separated (rotation sends both)."""
    return " ".join(signature(key, msg_id, timestamp, body) for key in keys)


def public_keys(keys: Sequence[SigningKey]) -> list[str]:
    """The `whpk_` public keys of the asymmetric keys, in the order given (current first)."""
    return [key.public_key for key in keys if isinstance(key, Ed25519Key)]
