"""The cluster verbs of the command line: publish, replay, gen-secret.

Each module adds its parser and a handler (`args.handler(args) -> exit code`); cli.py only
registers them. They use webhook_operator.client, so they never load kopf or the engine.
"""

from __future__ import annotations

import argparse

from webhook_operator.commands import gen_secret, publish, replay

VERBS = ("publish", "replay", "gen-secret")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    publish.register(commands)
    replay.register(commands)
    gen_secret.register(commands)
