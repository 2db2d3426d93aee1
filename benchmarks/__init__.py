"""The performance benchmark: `python -m benchmarks` (see docs/performance.md).

It measures, in one run on one machine and one API server, the ceilings the operator works
under (API creates and status writes, HTTP POSTs from one process) and what the operator
reaches against them (sustained throughput, latency, fan-out, head-of-line blocking, cost).

Processes: the Kubernetes API stand-in (`benchmarks.standin_proc`), the webhook receiver
(`benchmarks.receiver_proc`) and the operator (`benchmarks.operator_proc`) each run in their
own process, so each one's CPU and memory are its own; the benchmark process is the producer
and the clock. Arrival times are `time.monotonic()`, CLOCK_MONOTONIC, one clock for every
process on Linux.
"""
