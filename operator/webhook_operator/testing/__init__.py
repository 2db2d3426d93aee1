"""What the demo, the tests and the benchmark run the operator against, on one machine:

- `api_standin`: a Kubernetes API stand-in over real HTTP (kmock's emulator, made to behave
  like kube-apiserver where the operator relies on it), in layers: `standin_storage` (objects,
  versions, watch events), `standin_reads` (lists, watches), `api_standin` (HTTP, faults from
  `api_standin_faults`), with `standin_requests` the helpers they share;
- `operator_thread`: the real operator in a thread with its own event loop.

Installed with the `demo` extra (kmock and its kin); production modules never import this
package (an import-linter contract).
"""
