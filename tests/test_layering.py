"""Three edges over one library: the CLI (cli/), the service (service/) and the queue's workers
(worker/) import the library; nothing in the library imports an edge, and the edges do not
import each other beyond the CLI starting the other two."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("graph", "tools", "verifiers", "checkpoints", "observability", "evals")
EDGES = {"cli", "service", "worker"}


def imported_packages(package: str) -> dict[str, set[str]]:
    """Top-level packages each module under `package` imports."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize("package", LIBRARY)
def test_the_library_imports_no_edge(package: str) -> None:
    offenders = {m: n & EDGES for m, n in imported_packages(package).items() if n & EDGES}
    assert offenders == {}


def test_the_edges_do_not_import_each_other() -> None:
    assert {m for m, n in imported_packages("service").items() if n & {"cli", "worker"}} == set()
    assert {m for m, n in imported_packages("worker").items() if n & {"cli", "service"}} == set()
    # `signoff serve` builds the app: the one place the CLI names the service; `signoff worker`
    # and the commands that enqueue are the one place it names the worker.
    assert {m for m, n in imported_packages("cli").items() if "service" in n} == \
        {"cli/service.py"}
    assert {m for m, n in imported_packages("cli").items() if "worker" in n} == {"cli/queue.py"}
