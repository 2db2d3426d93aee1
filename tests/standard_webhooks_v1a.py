"""A receiver's `v1a` check written from the Standard Webhooks spec text, not from our signing code.

The spec (spec/standard-webhooks.md, "Signature scheme" and "Webhook headers"): the signed content
is `{msg_id}.{timestamp}.{payload}`; asymmetric signatures are ed25519, serialised as base64 and
prefixed `v1a,`; public keys are `whpk_` + base64; `webhook-signature` is a space-delimited list,
and a consumer tries each signature until one verifies; the timestamp must be within a tolerance
of now. The official `standardwebhooks` library has no `v1a` support, so this is the judge, and
it uses only `cryptography`'s ed25519 verification (a battle-tested library, as the spec asks).
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

TOLERANCE_SECONDS = 5 * 60


class V1aVerificationError(Exception):
    pass


def verify_v1a(public_key: str, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> None:
    """Raise V1aVerificationError unless one `v1a` entry of webhook-signature verifies with `public_key`."""
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        msg_id = lowered["webhook-id"]
        timestamp = lowered["webhook-timestamp"]
        signatures = lowered["webhook-signature"]
    except KeyError as missing:
        raise V1aVerificationError(f"missing header {missing}") from None
    if not timestamp.isdigit() or abs((now or time.time()) - int(timestamp)) > TOLERANCE_SECONDS:
        raise V1aVerificationError("timestamp outside the tolerance")
    if not public_key.startswith("whpk_"):
        raise V1aVerificationError("a public key starts with whpk_")
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    for entry in signatures.split(" "):
        version, _, encoded = entry.partition(",")
        if version != "v1a":
            continue
        try:
            key.verify(base64.b64decode(encoded, validate=True), signed)
        except (InvalidSignature, binascii.Error, ValueError):
            continue
        return
    raise V1aVerificationError("no v1a signature verifies with this public key")
