"""Standard Webhooks signatures, checked against the official `standardwebhooks` library."""

from __future__ import annotations

import base64
import datetime as dt
import time
from collections.abc import Callable

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from webhook_operator.domain.signing import (
    MAX_KEY_BYTES,
    MIN_KEY_BYTES,
    SigningKey,
    SigningKeyError,
    parse_signing_key,
    signature,
    signature_header,
)

key_bytes = st.binary(min_size=MIN_KEY_BYTES, max_size=MAX_KEY_BYTES)
msg_ids = st.text(min_size=1, max_size=64).filter(lambda s: s.strip() == s and " " not in s)
bodies = st.text(max_size=2000).map(str.encode)  # the library verifies UTF-8 text bodies


def whsec(secret: bytes) -> str:
    return "whsec_" + base64.b64encode(secret).decode()


@given(secret=key_bytes, msg_id=msg_ids, body=bodies, skew=st.integers(-290, 290))
def test_our_signature_verifies_with_the_official_library(
    secret: bytes, msg_id: str, body: bytes, skew: int
) -> None:
    timestamp = int(time.time()) + skew  # the library accepts 5 minutes either way
    key = parse_signing_key(whsec(secret), key_name="k/signingKey")
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header([key], msg_id, timestamp, body),
    }
    Webhook(whsec(secret)).verify(body, headers, json_parse=False)


@given(secret=key_bytes, msg_id=msg_ids, body=bodies, timestamp=st.integers(0, 253_402_300_799))
def test_our_signature_equals_the_official_librarys_for_any_timestamp(
    secret: bytes, msg_id: str, body: bytes, timestamp: int
) -> None:
    key = parse_signing_key(whsec(secret), key_name="k/signingKey")
    when = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    assert signature(key, msg_id, timestamp, body) == Webhook(whsec(secret)).sign(msg_id, when, body.decode())


@given(current=key_bytes, previous=key_bytes, body=bodies)
def test_during_rotation_each_key_verifies_the_two_signature_header(
    current: bytes, previous: bytes, body: bytes
) -> None:
    timestamp = int(time.time())
    keys = [parse_signing_key(whsec(s), key_name="k") for s in (current, previous)]
    header = signature_header(keys, "msg_1", timestamp, body)
    assert len(header.split(" ")) == 2
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(timestamp), "webhook-signature": header}
    for secret in (current, previous):
        Webhook(whsec(secret)).verify(body, headers, json_parse=False)


@given(secret=key_bytes, other=key_bytes)
def test_a_signature_does_not_verify_with_another_key(secret: bytes, other: bytes) -> None:
    assume(secret != other)
    timestamp = int(time.time())
    key = parse_signing_key(whsec(secret), key_name="k")
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, "msg_1", timestamp, b"{}"),
    }
    with pytest.raises(WebhookVerificationError):
        Webhook(whsec(other)).verify(b"{}", headers)


@given(secret=key_bytes)
def test_unpadded_base64_and_surrounding_whitespace_are_accepted(secret: bytes) -> None:
    value = "  " + whsec(secret).rstrip("=") + "\n"
    assert parse_signing_key(value, key_name="k").secret == secret
    assert parse_signing_key(value.encode(), key_name="k").secret == secret


# --- key material never shows -------------------------------------------------------------------


@given(secret=key_bytes)
def test_the_repr_of_a_key_hides_the_secret(secret: bytes) -> None:
    key = parse_signing_key(whsec(secret), key_name="k")
    shown = [repr(key), str(key), f"{key}", repr([key]), repr((key, key))]
    encoded = base64.b64encode(secret).decode()
    for text in shown:
        assert text.count("SigningKey(<redacted>)") >= 1
        assert encoded not in text and repr(secret) not in text and secret.hex() not in text


def test_a_key_is_immutable() -> None:
    key = SigningKey(b"x" * 32)
    with pytest.raises(AttributeError):
        key.secret = b"y" * 32  # type: ignore[misc]


# Values long enough that finding one inside a message cannot be a coincidence.
base64ish = st.text(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_!.", min_size=12, max_size=80
)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("c2VjcmV0LXZhbHVlLXRoYXQtaXMtbG9uZw==", "must start with 'whsec_'"),
        ("WHSEC_c2VjcmV0LXZhbHVlLXRoYXQtaXMtbG9uZw==", "must start with 'whsec_'"),
        ("whsec_not*base64*at*all*zz", "not valid base64"),
        ("whsec_" + base64.b64encode(b"short-key").decode(), "decodes to 9 bytes"),
        (
            "whsec_" + base64.b64encode(b"k" * (MAX_KEY_BYTES + 1)).decode(),
            f"decodes to {MAX_KEY_BYTES + 1} bytes",
        ),
        ("whsec_", "decodes to 0 bytes"),
        (b"whsec_\xff\xfe-binary-secret-bytes", "not ASCII"),
    ],
)
def test_a_bad_key_raises_a_signing_key_error_that_names_the_key_not_the_value(
    value: str | bytes, why: str
) -> None:
    with pytest.raises(SigningKeyError) as raised:
        parse_signing_key(value, key_name="crm-secret/signingKey")
    message = str(raised.value)
    assert why in message
    assert "'crm-secret/signingKey'" in message
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    body = text.removeprefix("whsec_").removeprefix("WHSEC_")
    if len(body) >= 8:
        assert body not in message and body not in repr(raised.value)


@given(value=st.one_of(base64ish, base64ish.map(lambda s: "whsec_" + s), st.text(min_size=12)))
def test_no_invalid_key_value_appears_in_the_error(value: str) -> None:
    body = value.strip().removeprefix("whsec_")
    assume(len(body) >= 12)
    error = raised_by(lambda: parse_signing_key(value, key_name="k"))
    assume(error is not None)
    assert body not in str(error)
    assert body not in repr(error)
    # no chained decoder error (binascii quotes the input) either
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def raised_by(call: Callable[[], object]) -> SigningKeyError | None:
    try:
        call()
    except SigningKeyError as error:
        return error
    return None
