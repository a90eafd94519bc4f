"""Workflows signoff can run, by name. `register_workflow` is the extension point.

A workflow in its own package reaches the CLI and the service in one of two ways:

- an entry point in the `signoff.workflows` group whose value names the `Workflow`
  (`flags = "acme_flags.workflow:FLAGS"`), or a module that registers its workflows when
  imported (`flags = "acme_flags.workflow"`);
- `SIGNOFF_WORKFLOWS=module:attribute[,module:attribute]`, read by the edges and handed to
  `use_workflow_specs`, which loads a workflow from the import path with no packaging.

Either is loaded the first time a workflow is looked up. A plugin cannot replace a shipped
workflow; anything wrong with one is a one-line PluginError.
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points
from typing import Any

from graph.context import Workflow
from graph.errors import PluginError, SignoffError

PLUGIN_GROUP = "signoff.workflows"
"""Entry-point group of plugin workflows (a Workflow, or a module that registers some)."""
SPEC_VARIABLE = "SIGNOFF_WORKFLOWS"
"""The environment variable an edge reads the `module:attribute` list from."""
SHIPPED = ("support", "access")
"""Workflows signoff ships; a plugin may not take their names."""

_WORKFLOWS: dict[str, Workflow] = {}
_plugins_loaded = False
_pending_specs: list[str] = []
_loaded_specs: set[str] = set()


def register_workflow(workflow: Workflow) -> Workflow:
    """Make a workflow runnable by name (`signoff run --workflow NAME`)."""
    _WORKFLOWS[workflow.name] = workflow
    return workflow


def get_workflow(name: str) -> Workflow:
    _load_all()
    try:
        return _WORKFLOWS[name]
    except KeyError:
        known = ", ".join(sorted(_WORKFLOWS))
        raise SignoffError(f"unknown workflow {name!r} (known: {known})") from None


def workflow_names() -> list[str]:
    _load_all()
    return sorted(_WORKFLOWS)


def use_workflow_specs(spec: str | None) -> None:
    """Load the workflows `spec` names (SIGNOFF_WORKFLOWS's value, read by an edge) when a
    workflow is next looked up; an empty or None spec names none."""
    if spec and spec.strip() and spec not in _loaded_specs and spec not in _pending_specs:
        _pending_specs.append(spec)


def load_workflow_specs(spec: str) -> list[Workflow]:
    """Import each `module:attribute` of the comma-separated `spec` and register the Workflow
    it names; returns them in order. Raises PluginError (one line) for an entry that is not
    module:attribute, a module that cannot be imported, a missing attribute, a value that is
    not a Workflow, or a workflow taking a shipped workflow's name."""
    _load_builtin()
    loaded = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        module_name, colon, attribute = item.partition(":")
        if not colon or not module_name.strip() or not attribute.strip():
            raise PluginError(f"{SPEC_VARIABLE}: {item!r} is not module:attribute")
        module = _import(module_name.strip(), f"{SPEC_VARIABLE} entry {item!r}")
        try:
            value = functools.reduce(getattr, attribute.strip().split("."), module)
        except AttributeError:
            raise PluginError(f"{SPEC_VARIABLE}: module {module_name!r} has no attribute "
                              f"{attribute!r}") from None
        loaded.append(_register_plugin(value, f"{SPEC_VARIABLE} entry {item!r}"))
    return loaded


def _register_plugin(value: Any, source: str) -> Workflow:
    if not isinstance(value, Workflow):
        raise PluginError(f"{source} is a {type(value).__name__}, not a Workflow")
    if value.name in SHIPPED and _WORKFLOWS.get(value.name) is not value:
        raise PluginError(f"{source}: workflow {value.name!r} would replace the shipped "
                          f"workflow of that name; give it another name")
    return register_workflow(value)


def _import(module_name: str, source: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - a broken plugin is a one-line error
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PluginError(f"{source}: cannot import {module_name!r}: {detail}") from None


def _load_builtin() -> None:
    if "support" not in _WORKFLOWS:
        from graph.workflows.support import SUPPORT

        register_workflow(SUPPORT)
    if "access" not in _WORKFLOWS:
        from graph.workflows.access import ACCESS

        register_workflow(ACCESS)


def _load_entry_points() -> None:
    shipped = {name: _WORKFLOWS[name] for name in SHIPPED}
    for entry in entry_points(group=PLUGIN_GROUP):
        source = f"workflow plugin {entry.name!r} ({entry.value})"
        try:
            value = entry.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin is a one-line error
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise PluginError(f"cannot load {source}: {detail}") from None
        if entry.attr is not None:
            _register_plugin(value, source)
        # A module entry registered its workflows as it was imported; none may have taken a
        # shipped name (fail closed: put the shipped one back and refuse).
        for name, workflow in shipped.items():
            if _WORKFLOWS[name] is not workflow:
                _WORKFLOWS[name] = workflow
                raise PluginError(f"{source}: registers a workflow named {name!r}, which would "
                                  "replace the shipped workflow of that name")


def _load_all() -> None:
    global _plugins_loaded
    _load_builtin()
    # Marked loaded before loading, so a plugin that looks a workflow up as it is imported
    # does not load plugins again; unmarked when loading fails, so a broken plugin fails
    # every lookup, not only the first.
    if not _plugins_loaded:
        _plugins_loaded = True
        try:
            _load_entry_points()
        except BaseException:
            _plugins_loaded = False
            raise
    while _pending_specs:
        spec = _pending_specs.pop(0)
        _loaded_specs.add(spec)
        try:
            load_workflow_specs(spec)
        except BaseException:
            _loaded_specs.discard(spec)
            _pending_specs.insert(0, spec)
            raise
