"""`webhook-operator demo`: the whole flow on this machine, with no cluster (see `flow`).

Installed with the `demo` extra (`pip install 'webhook-operator[demo]'`): the API stand-in it
runs needs kmock. Production modules never import this package (an import-linter contract).
"""

from webhook_operator.demo.examples import DemoError
from webhook_operator.demo.flow import run_demo

__all__ = ["DemoError", "run_demo"]
