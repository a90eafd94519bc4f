"""Workflows signoff can run, by name. `register_workflow` is the extension point."""

from __future__ import annotations

from importlib.metadata import entry_points

from graph.context import Workflow
from graph.errors import SignoffError

PLUGIN_GROUP = "signoff.workflows"
"""Entry-point group of modules that register workflows when imported."""

_WORKFLOWS: dict[str, Workflow] = {}
_plugins_loaded = False


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
    if "access" not in _WORKFLOWS:
        from graph.workflows.access import ACCESS

        register_workflow(ACCESS)
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        for entry in entry_points(group=PLUGIN_GROUP):
            try:
                entry.load()  # importing the module registers its workflows
            except Exception as exc:  # noqa: BLE001 - a broken plugin is a one-line error
                raise SignoffError(f"cannot load workflow plugin {entry.name!r} "
                                   f"({entry.value}): {exc}") from None
