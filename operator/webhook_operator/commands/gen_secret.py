"""`webhook-operator gen-secret NAME`: a signing Secret with a fresh key, created or printed.

Symmetric (default): `signingKey: whsec_<base64 of 32 random bytes>` (HMAC-SHA256, `v1`).
`--asymmetric`: `signingKey: whsk_<base64 of the 32-byte ed25519 private key seed>` (`v1a`); the
public key `whpk_<base64 of the 32-byte public key>` is printed and kept in the Secret's
annotation `webhooks.openplatform.dev/public-key`, for receivers to pin. The key itself is never
printed, except in the manifest that `-o yaml` was asked for.
"""

from __future__ import annotations

import argparse
import base64
import secrets
from typing import Any

import yaml

from webhook_operator.client import AlreadyExistsError, ClientError
from webhook_operator.client.checks import GROUP
from webhook_operator.client.connection import connect
from webhook_operator.client.transport import SyncApi
from webhook_operator.commands.common import (
    BAD_INPUT,
    CLUSTER_ERROR,
    CONFLICT,
    OK,
    add_connection_flags,
    fail,
    note,
)

PUBLIC_KEY_ANNOTATION = f"{GROUP}/public-key"
KEY_BYTES = 32


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "gen-secret",
        help="create (or print with -o yaml) a signing Secret with a fresh key",
        description="Create a Secret holding a fresh signing key for a WebhookSubscription's "
        "spec.signing.secretRef, or print it as a manifest (-o yaml) without touching the cluster.",
    )
    parser.add_argument("name", metavar="NAME", help="the Secret's name")
    add_connection_flags(parser)
    parser.add_argument(
        "--asymmetric",
        action="store_true",
        help="an ed25519 key pair (v1a signatures) instead of an HMAC key",
    )
    parser.add_argument(
        "-o", "--output", choices=("yaml",), help="print the Secret manifest instead of creating it"
    )
    parser.set_defaults(handler=run)


def symmetric_key() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def asymmetric_key() -> tuple[str, str]:
    """(`whsk_...` private key seed, `whpk_...` public key)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    public = private.public_key().public_bytes_raw()
    return "whsk_" + base64.b64encode(seed).decode(), "whpk_" + base64.b64encode(public).decode()


def secret_manifest(
    name: str, namespace: str | None, signing_key: str, public_key: str | None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    if public_key:
        metadata["annotations"] = {PUBLIC_KEY_ANNOTATION: public_key}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "stringData": {"signingKey": signing_key},
    }


def run(args: argparse.Namespace) -> int:
    if args.asymmetric:
        signing_key, public_key = asymmetric_key()
    else:
        signing_key, public_key = symmetric_key(), None
    if args.output == "yaml":
        print(
            yaml.safe_dump(
                secret_manifest(args.name, args.namespace, signing_key, public_key), sort_keys=False
            ),
            end="",
        )
        if public_key:
            note(f"public key (for receivers): {public_key}")
        return OK
    namespace = args.namespace
    try:
        connection = connect(args.kubeconfig, args.context)
        namespace = namespace or connection.default_namespace
        api = SyncApi(connection)
        try:
            manifest = secret_manifest(args.name, namespace, signing_key, public_key)
            api.request("POST", f"/api/v1/namespaces/{namespace}/secrets", body=manifest)
        finally:
            api.close()
    except AlreadyExistsError:
        fail(
            CONFLICT,
            f"secret {args.name} already exists in namespace {namespace}: nothing was changed. To rotate "
            "its key, move signingKey to previousSigningKey and set a new one (docs/rotate-a-signing-key.md)",
        )
    except ClientError as error:
        code = BAD_INPUT if getattr(error, "status", 0) == 422 else CLUSTER_ERROR
        fail(code, str(error))
    print(f"secret/{args.name} created in namespace {namespace}")
    if public_key:
        print(f"public key: {public_key}")
    return OK
