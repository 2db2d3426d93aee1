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

from tests.standard_webhooks_v1a import V1aVerificationError, verify_v1a
from webhook_operator.domain.signing import (
    MAX_KEY_BYTES,
    MIN_KEY_BYTES,
    Ed25519Key,
    HmacKey,
    SigningKeyError,
    parse_signing_key,
    public_keys,
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
        assert text.count("HmacKey(<redacted>)") >= 1
        assert encoded not in text and repr(secret) not in text and secret.hex() not in text


def test_a_key_is_immutable() -> None:
    key = HmacKey(b"x" * 32)
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
        (
            "whsec_" + base64.b64encode(b"k" * 16).decode(),
            "Standard Webhooks requires symmetric keys of at least 24",
        ),
        ("whsk_" + base64.b64encode(b"k" * 31).decode(), "decodes to 31 bytes; a 'whsk_' key is the 32-byte"),
        ("whsk_not*base64*at*all*zz", "not valid base64 after 'whsk_'"),
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


# --- v1a: ed25519 (whsk_ keys) -------------------------------------------------------------------

seeds = st.binary(min_size=32, max_size=32)


def whsk(seed: bytes) -> str:
    return "whsk_" + base64.b64encode(seed).decode()


@given(seed=seeds, msg_id=msg_ids, body=bodies, skew=st.integers(-290, 290))
def test_a_v1a_signature_verifies_per_the_spec_with_the_published_public_key(
    seed: bytes, msg_id: str, body: bytes, skew: int
) -> None:
    timestamp = int(time.time()) + skew
    key = parse_signing_key(whsk(seed), key_name="k/signingKey")
    assert isinstance(key, Ed25519Key)
    header = signature_header([key], msg_id, timestamp, body)
    assert header.startswith("v1a,")
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": header}
    verify_v1a(key.public_key, body, headers)


def test_the_public_key_is_the_ed25519_public_key_of_the_seed_rfc8032_vector() -> None:
    # RFC 8032 section 7.1, TEST 1: secret key 9d61b1...7f60, public key d75a98...511a.
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    key = parse_signing_key(whsk(seed), key_name="k")
    assert isinstance(key, Ed25519Key)
    assert key.public_key == "whpk_" + base64.b64encode(public).decode()
    # ... and its signature of the empty message is the RFC's.
    expected = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    assert key.sign(b"") == expected


@given(seed=seeds, other=seeds)
def test_a_v1a_signature_does_not_verify_with_another_public_key(seed: bytes, other: bytes) -> None:
    assume(seed != other)
    timestamp = int(time.time())
    key, wrong = (parse_signing_key(whsk(s), key_name="k") for s in (seed, other))
    assert isinstance(wrong, Ed25519Key)
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, "msg_1", timestamp, b"{}"),
    }
    with pytest.raises(V1aVerificationError):
        verify_v1a(wrong.public_key, b"{}", headers)


def test_a_tampered_body_or_timestamp_fails_v1a_verification() -> None:
    key = parse_signing_key(whsk(b"s" * 32), key_name="k")
    assert isinstance(key, Ed25519Key)
    timestamp = int(time.time())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, "msg_1", timestamp, b'{"a":1}'),
    }
    verify_v1a(key.public_key, b'{"a":1}', headers)
    with pytest.raises(V1aVerificationError):
        verify_v1a(key.public_key, b'{"a":2}', headers)
    with pytest.raises(V1aVerificationError):
        verify_v1a(key.public_key, b'{"a":1}', {**headers, "webhook-timestamp": str(timestamp + 1)})


@given(secret=key_bytes, seed=seeds, body=bodies)
def test_a_mixed_rotation_sends_v1a_and_v1_and_each_receiver_verifies_its_own(
    secret: bytes, seed: bytes, body: bytes
) -> None:
    timestamp = int(time.time())
    current = parse_signing_key(whsk(seed), key_name="k/signingKey")
    previous = parse_signing_key(whsec(secret), key_name="k/previousSigningKey")
    header = signature_header([current, previous], "msg_1", timestamp, body)
    assert [entry.split(",")[0] for entry in header.split(" ")] == ["v1a", "v1"]
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(timestamp), "webhook-signature": header}
    Webhook(whsec(secret)).verify(body, headers, json_parse=False)  # an old receiver, HMAC
    assert isinstance(current, Ed25519Key)
    verify_v1a(current.public_key, body, headers)  # a migrated receiver, the public key
    assert public_keys([current, previous]) == [current.public_key]


def test_public_keys_lists_the_asymmetric_keys_current_first() -> None:
    new, old = (parse_signing_key(whsk(bytes([n]) * 32), key_name="k") for n in (1, 2))
    assert isinstance(new, Ed25519Key) and isinstance(old, Ed25519Key)
    assert public_keys([new, old]) == [new.public_key, old.public_key]
    assert public_keys([parse_signing_key(whsec(b"x" * 32), key_name="k")]) == []
    assert all(len(base64.b64decode(k.removeprefix("whpk_"))) == 32 for k in public_keys([new, old]))


@given(seed=seeds)
def test_the_repr_of_an_ed25519_key_hides_the_seed(seed: bytes) -> None:
    key = parse_signing_key(whsk(seed), key_name="k")
    for text in (repr(key), str(key), repr([key])):
        assert "<redacted>" in text
        assert base64.b64encode(seed).decode() not in text and seed.hex() not in text
