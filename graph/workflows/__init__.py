"""Workflows signoff can run, by name. `register_workflow` is the extension point."""

from __future__ import annotations

from graph.context import Workflow
from graph.errors import SignoffError

_WORKFLOWS: dict[str, Workflow] = {}


def register_workflow(workflow: Workflow) -> Workflow:
    """Make a workflow runnable by name (`signoff run --workflow NAME`)."""
    _WORKFLOWS[workflow.name] = workflow
    return workflow


def get_workflow(name: str) -> Workflow:
    _load_builtin()
    try:
        return _WORKFLOWS[name]
    except KeyError:
        known = ", ".join(sorted(_WORKFLOWS))
        raise SignoffError(f"unknown workflow {name!r} (known: {known})") from None


def workflow_names() -> list[str]:
    _load_builtin()
    return sorted(_WORKFLOWS)


def _load_builtin() -> None:
    if "support" not in _WORKFLOWS:
        from graph.workflows.support import SUPPORT

        register_workflow(SUPPORT)
