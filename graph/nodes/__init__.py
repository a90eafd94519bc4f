"""The graph's nodes, one per module: plan, gate, verify, approve, execute, postcheck,
fallback, finish. Nodes decide; only execute mutates."""
