"""Where the API server is and how to authenticate: a kubeconfig, or the pod's service account.

The official `kubernetes` package reads the credentials (every kubeconfig form: client
certificates, tokens, exec plugins, `insecure-skip-tls-verify`, `proxy-url`; the service
account's token re-read as the kubelet rotates it); requests then go through httpx, one code path
for the sync and the async publisher. It is imported here, on first connection, not when
`webhook_operator.client` is imported (it costs ~0.3 s).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webhook_operator.client.errors import ConfigError

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class Connection:
    server: str
    default_namespace: str
    ssl_context: ssl.SSLContext | bool
    auth_header: Callable[[], str | None]  # the current Authorization value (tokens rotate)
    proxy: str | None = None
    sni_hostname: str | None = None


def connect(kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None) -> Connection:
    """The connection for an explicit kubeconfig, else `$KUBECONFIG`, else the pod's service
    account when running in a pod, else `~/.kube/config` (blocking: reads files, may run an exec plugin).
    """
    from kubernetes import client, config

    configuration = client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
    try:
        if path is None and context is None and _in_cluster():
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            namespace = (SERVICE_ACCOUNT / "namespace").read_text().strip() or "default"
        else:
            path = str(path or Path("~/.kube/config").expanduser())
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, context=context, client_configuration=configuration, persist_config=False
            )
            contexts, active = config.list_kube_config_contexts(path)  # type: ignore[no-untyped-call]
            if context is not None:
                active = next(c for c in contexts if c["name"] == context)
            namespace = (active.get("context") or {}).get("namespace") or "default"
    except (config.ConfigException, OSError, StopIteration, KeyError, TypeError) as error:
        raise ConfigError(f"no usable cluster configuration: {error}") from None
    return Connection(
        server=configuration.host.rstrip("/"),
        default_namespace=namespace,
        ssl_context=_ssl_context(configuration),
        auth_header=lambda: _authorization(configuration),
        proxy=getattr(configuration, "proxy", None) or None,
        sni_hostname=getattr(configuration, "tls_server_name", None) or None,
    )


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (SERVICE_ACCOUNT / "token").exists()


def _authorization(configuration: Any) -> str | None:
    # auth_settings() calls the refresh hook: a rotated service-account token or an expired
    # exec-plugin credential is fetched again here.
    setting = configuration.auth_settings().get("BearerToken")
    return str(setting["value"]) if setting and setting.get("value") else None


def _ssl_context(configuration: Any) -> ssl.SSLContext | bool:
    if not configuration.host.startswith("https"):
        return False
    if not configuration.verify_ssl:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if configuration.cert_file and configuration.key_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context
