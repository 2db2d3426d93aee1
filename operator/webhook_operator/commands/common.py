"""What the cluster verbs share: connection flags, exit codes, and how errors are reported."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

# Exit codes, the same for every verb (docs/publish-events.md lists them for scripts).
OK = 0
EVENT_FAILED = 1  # publish --wait: the event Failed
BAD_INPUT = 2  # nothing was created or changed; also publish --wait timing out (the contract's 2)
CONFLICT = 3  # the key was used for another event; the Secret exists already
CLUSTER_ERROR = 4  # the API server refused, or could not be reached after retries


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n", "--namespace", metavar="NS", help="namespace (default: the kubeconfig context's, or the pod's)"
    )
    parser.add_argument(
        "--kubeconfig", metavar="FILE", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)"
    )
    parser.add_argument("--context", metavar="NAME", help="kubeconfig context (default: the current one)")


def fail(code: int, message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def note(message: str) -> None:
    """A human line on stderr: stdout stays for what scripts read (a name, a manifest)."""
    print(message, file=sys.stderr)
