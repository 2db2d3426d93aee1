"""What the demo, the tests and the benchmark run the operator against, on one machine:

- `api_standin`: a Kubernetes API stand-in over real HTTP (kmock's emulator, made to behave
  like kube-apiserver where the operator relies on it), and `api_standin_faults`;
- `operator_thread`: the real operator in a thread with its own event loop.

Installed with the `demo` extra (kmock and its kin); production modules never import this
package (an import-linter contract).
"""
