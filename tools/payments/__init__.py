"""A sample payments service: a small HTTP API with Stripe-like idempotency, scoped bearer
keys and configurable faults, run as its own process (`signoff payments serve`).

It stands in for the external system a real refund goes to, so that signoff's exactly-once
guarantee for external effects can be shown, and broken, by killing processes
(docs/architecture.md, "External effects"). It keeps its own SQLite file.
"""
