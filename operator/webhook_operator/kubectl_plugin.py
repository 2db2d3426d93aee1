"""`kubectl-webhooks`: the whole command line as a kubectl plugin (`kubectl webhooks publish ...`).

kubectl finds any executable named `kubectl-<name>` on PATH and passes the rest of the command
line to it; `kubectl webhooks` alone prints a short help instead of argparse's usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from webhook_operator.commands import VERBS, register

PROG = "kubectl webhooks"
SHORT_HELP = f"""\
{PROG}: publish and manage webhook events (webhook-operator)

  {PROG} publish TYPE [-n NS] [--data JSON | --data-file FILE] [--key KEY] [--wait]
  {PROG} replay -n NS (--event NAME | --subscription NAME [--since DURATION])
  {PROG} gen-secret NAME [-n NS] [--asymmetric] [-o yaml]
  {PROG} run | demo            the operator itself (see webhook-operator)

Run '{PROG} COMMAND --help' for a command's flags.
"""


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments:
        print(SHORT_HELP, end="")
        return 0
    if arguments[0] in VERBS:
        # The cluster verbs alone: `publish` then starts without loading kopf (cli.py's imports).
        parser = argparse.ArgumentParser(prog=PROG)
        register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
        args = parser.parse_args(arguments)
        return int(args.handler(args))
    from webhook_operator.cli import main as cli_main

    return cli_main(arguments, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
