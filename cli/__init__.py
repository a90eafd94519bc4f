"""The `signoff` command line: a thin edge over the library (graph, tools, verifiers,
checkpoints, evals, observability). Nothing in the library imports from here."""
