"""The installed commands: `webhook-operator` and `kubectl-webhooks` (`kubectl webhooks ...`).

Both have every verb. The cluster verbs (publish, replay, gen-secret) are dispatched here
without importing cli.py, whose `run` and `demo` load kopf and the engine (~1-2 s at start-up):
a script that publishes in a loop pays that on every call otherwise. kubectl finds any
executable named `kubectl-<name>` on PATH and passes the rest of the command line to it;
`kubectl webhooks` alone prints a short help instead of argparse's usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from webhook_operator.commands import VERBS, register

PLUGIN = "kubectl webhooks"
SHORT_HELP = f"""\
{PLUGIN}: publish and manage webhook events (webhook-operator)

  {PLUGIN} publish TYPE [-n NS] [--data JSON | --data-file FILE] [--key KEY] [--wait]
  {PLUGIN} replay -n NS (--event NAME | --subscription NAME [--since DURATION])
  {PLUGIN} gen-secret NAME [-n NS] [--asymmetric] [-o yaml]
  {PLUGIN} run | demo            the operator itself (see webhook-operator)

Run '{PLUGIN} COMMAND --help' for a command's flags.
"""


def dispatch(arguments: Sequence[str], prog: str) -> int:
    if arguments and arguments[0] in VERBS:
        parser = argparse.ArgumentParser(prog=prog)
        register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
        args = parser.parse_args(arguments)
        return int(args.handler(args))
    from webhook_operator.cli import main as cli_main

    return cli_main(arguments, prog=prog)


def main(argv: Sequence[str] | None = None) -> int:
    """`webhook-operator`."""
    return dispatch(list(sys.argv[1:] if argv is None else argv), "webhook-operator")


def kubectl_main(argv: Sequence[str] | None = None) -> int:
    """`kubectl-webhooks`."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments:
        print(SHORT_HELP, end="")
        return 0
    return dispatch(arguments, PLUGIN)
