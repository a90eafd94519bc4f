"""signoff's HTTP edge: a REST API under /api/v1 and the approval inbox, over the same runner
and stores as the CLI (see docs/service.md)."""
