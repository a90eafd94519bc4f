"""Workflow plugins (issue 17, item 6): a package registering through the `signoff.workflows`
entry point, pip-installed into signoff's venv from a temporary folder, and a module named by
SIGNOFF_WORKFLOWS without packaging; both run through the CLI as a user would."""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from graph.errors import PluginError
from graph.runner import Home
from graph.workflows import _WORKFLOWS, get_workflow, load_workflow_specs
from service.app import create_app
from service.core import ServiceSettings

SIGNOFF = Path(sys.executable).with_name("signoff")

# The plugin's one module: a workflow on the support domain under its own name and team.
PLUGIN_MODULE = '''\
from dataclasses import replace

from graph.workflows.support import SUPPORT

WORKFLOW = replace(SUPPORT, name="{name}", team="plugin-team", db_filename="{name}.db")
NOT_A_WORKFLOW = ["support"]
TAKES_A_SHIPPED_NAME = replace(SUPPORT, team="impostor")
'''

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=70.1"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"

[project.entry-points."signoff.workflows"]
{name} = "{module}:WORKFLOW"

[tool.setuptools]
py-modules = ["{module}"]
'''


def write_plugin(folder: Path, *, packaged: bool) -> tuple[str, str]:
    """A plugin in `folder`; returns (its workflow's name, its module's name)."""
    tag = secrets.token_hex(4)
    name, module = f"plugin-{tag}", f"signoff_plugin_{tag}"
    folder.mkdir(parents=True)
    (folder / f"{module}.py").write_text(PLUGIN_MODULE.format(name=name))
    if packaged:
        (folder / "pyproject.toml").write_text(
            PYPROJECT.format(dist=f"signoff-plugin-{tag}", name=name, module=module))
    return name, module


def signoff(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "SIGNOFF_HOME": str(home), **env}
    return subprocess.run([str(SIGNOFF), *args], capture_output=True, text=True, timeout=120,
                          env=environment, check=False)


def refunds_of(home: Path, name: str) -> list[tuple[str, int]]:
    with sqlite3.connect(home / f"{name}.db") as conn:
        return conn.execute("SELECT order_id, amount_cents FROM refunds WHERE run_id IS NOT NULL"
                            ).fetchall()


@pytest.fixture
def installed_plugin(tmp_path: Path) -> Iterator[str]:
    """A plugin package pip-installed (editable) into this venv; uninstalled afterwards."""
    name, _module = write_plugin(tmp_path / "plugin", packaged=True)
    dist = "signoff-plugin-" + name.removeprefix("plugin-")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    installed = subprocess.run([*pip, "install", "-q", "--no-build-isolation", "--no-deps",
                                "-e", str(tmp_path / "plugin")],
                               capture_output=True, text=True, timeout=300, check=False)
    assert installed.returncode == 0, installed.stderr
    try:
        yield name
    finally:
        subprocess.run([*pip, "uninstall", "-q", "-y", dist], capture_output=True,
                       timeout=120, check=False)


@pytest.mark.slow
def test_an_installed_plugin_runs_through_the_cli(installed_plugin: str, home: Path) -> None:
    ran = signoff(home, "run", "TKT-1001", "--workflow", installed_plugin)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("run run-") and ": resolved (2 mutation(s))" in ran.stdout
    assert refunds_of(home, installed_plugin) == [("ORD-10001", 1800)]
    # Its runs are its own: recorded under the plugin's name, not the support workflow's.
    listed = signoff(home, "runs")
    assert listed.returncode == 0, listed.stderr
    assert installed_plugin in listed.stdout and "resolved" in listed.stdout


def test_signoff_workflows_loads_a_module_without_packaging(tmp_path: Path, home: Path) -> None:
    name, module = write_plugin(tmp_path / "loose", packaged=False)
    env = {"PYTHONPATH": str(tmp_path / "loose"), "SIGNOFF_WORKFLOWS": f"{module}:WORKFLOW"}
    ran = signoff(home, "run", "TKT-1001", "--workflow", name, **env)
    assert ran.returncode == 0, ran.stderr
    assert ": resolved (2 mutation(s))" in ran.stdout
    assert refunds_of(home, name) == [("ORD-10001", 1800)]
    # Without the variable the same command does not know the workflow.
    unknown = signoff(home, "run", "TKT-1001", "--workflow", name,
                      PYTHONPATH=str(tmp_path / "loose"))
    assert unknown.returncode == 1
    assert unknown.stderr.startswith(f"error: unknown workflow {name!r}")


@pytest.mark.parametrize(("spec", "message"), [
    ("no_colon_here", "SIGNOFF_WORKFLOWS: 'no_colon_here' is not module:attribute"),
    ("{module}:", "SIGNOFF_WORKFLOWS: '{module}:' is not module:attribute"),
    ("no_such_module_xyz:WORKFLOW", "SIGNOFF_WORKFLOWS entry 'no_such_module_xyz:WORKFLOW': "
     "cannot import 'no_such_module_xyz': No module named 'no_such_module_xyz'"),
    ("{module}:MISSING", "SIGNOFF_WORKFLOWS: module '{module}' has no attribute 'MISSING'"),
    ("{module}:NOT_A_WORKFLOW",
     "SIGNOFF_WORKFLOWS entry '{module}:NOT_A_WORKFLOW' is a list, not a Workflow"),
    ("{module}:TAKES_A_SHIPPED_NAME", "SIGNOFF_WORKFLOWS entry '{module}:TAKES_A_SHIPPED_NAME': "
     "workflow 'support' would replace the shipped workflow of that name; give it another "
     "name"),
], ids=["no-colon", "no-attribute-name", "no-module", "missing-attribute", "not-a-workflow",
        "shipped-name"])
def test_a_bad_spec_is_one_line_and_changes_nothing(
        tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, spec: str,
        message: str) -> None:
    name, module = write_plugin(tmp_path / "loose", packaged=False)
    monkeypatch.syspath_prepend(str(tmp_path / "loose"))
    support = get_workflow("support")
    with pytest.raises(PluginError) as raised:
        load_workflow_specs(spec.format(module=module))
    assert str(raised.value) == message.format(module=module)
    assert get_workflow("support") is support
    # The CLI says the same in one line, exit 1, and no traceback.
    ran = signoff(home, "run", "TKT-1001", PYTHONPATH=str(tmp_path / "loose"),
                  SIGNOFF_WORKFLOWS=spec.format(module=module))
    assert (ran.returncode, ran.stderr) == (1, f"error: {message.format(module=module)}\n")
    assert not (home / "support.db").exists() or refunds_of(home, "support") == []


def test_the_service_loads_plugins_at_start_up(tmp_path: Path, home: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    name, module = write_plugin(tmp_path / "loose", packaged=False)
    monkeypatch.syspath_prepend(str(tmp_path / "loose"))
    with pytest.raises(PluginError, match="has no attribute 'MISSING'"):
        create_app(ServiceSettings(home=Home(home), workflows=f"{module}:MISSING"))
    try:
        app = create_app(ServiceSettings(home=Home(home), workflows=f"{module}:WORKFLOW"))
        app.state.service.close()
        assert get_workflow(name).team == "plugin-team"
    finally:
        _WORKFLOWS.pop(name, None)
