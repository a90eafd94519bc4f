"""Every command keeps one exit-code convention (README, "Exit codes"): 0 done, 1 a user
mistake or a refused action, 2 a usage error, 3 a damaged or unusable data directory, 4 an
internal error; whatever goes wrong, one `error:` line and never a traceback."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.main import app
from graph.observe import recorder_factory
from graph.runner import Home, Runner, initial_inputs
from graph.workflows import get_workflow
from tests.conftest import sample

ROOT = Path(__file__).resolve().parent.parent
SUPPORT_POLICY = str(ROOT / "verifiers" / "policies" / "support.toml")
WAITING, DONE, CRASHED = "{waiting}", "{done}", "{crashed}"
LEAD = "lead@acme.example"

# Per command: arguments that succeed, and arguments that are a user mistake (None: the
# command takes no input a user can get wrong without it being a usage error).
COMMANDS: dict[str, tuple[list[str] | None, list[str] | None]] = {
    "demo": (None, ["demo", "--workflow", "nope"]),  # a full demo is test_cli's
    "run": (["run", "TKT-1001"], ["run", "TKT-9999"]),
    "runs": (["runs"], None),
    "status": (["status", WAITING], ["status", "run-0000000000"]),
    "approve": (["approve", WAITING, "--as", LEAD, "--reason", "receipt checked"],
                ["approve", WAITING, "--as", "ops@signoff.local"]),  # the requester
    # The shipped policy holds nothing for the customer, so a confirmation is refused
    # (tests/test_customer_confirms.py confirms under a policy that does).
    "confirm": (None, ["confirm", WAITING, "--as", "marcus.oyelaran@example.com"]),
    "reject": (["reject", WAITING, "--as", LEAD, "--reason", "no receipt"],
               ["reject", DONE, "--as", LEAD, "--reason", "no receipt"]),
    "edit": (["edit", WAITING, "--as", LEAD, "--args", '{"amount_cents": 4000}'],
             ["edit", WAITING, "--as", LEAD, "--args", '{"amount_cents": "4000"}']),
    "resume": (["resume", CRASHED], ["resume", WAITING]),
    "kill": (["kill", "--workflow", "support"], ["kill"]),
    "unkill": (None, ["unkill", "--workflow", "support"]),
    "policy check": (["policy", "check", SUPPORT_POLICY], ["policy", "check", "/nonexistent.toml"]),
    "policy explain": (["policy", "explain", DONE], ["policy", "explain", "run-0000000000"]),
    "traces": (["traces"], None),
    "report": (["report"], ["report", "--prices", "/nonexistent.toml"]),
    "audit verify": (["audit", "verify"], None),
    "audit head": (["audit", "head"], None),
    "traces-purge": (["traces-purge", "--older-than-days", "365"], None),
    "prune": (["prune", "--older-than", "7d"], None),
    "eval": (None, ["eval", "--compare", "/nonexistent-a.json", "/nonexistent-b.json"]),
    "gate": (None, ["gate", "--workflow", "nope"]),
    # tests/test_payments_api.py runs these against a payments service it starts.
    "payments serve": (None, ["payments", "serve", "--faults", '{"bogus": 1}']),
    "payments key": (None, ["payments", "key", "--db", "/nonexistent-dir/payments.db",
                            "--out", "/nonexistent-dir/payments.key"]),
    "credentials rotate": (None, ["credentials", "rotate", "iam"]),
    "serve": (None, None),  # tests/test_service_api.py serves the app on loopback
    "users add": (["users", "add", LEAD, "--role", "support_lead", "--tenant", "acme"],
                  ["users", "add", "not-an-email", "--role", "support_lead", "--tenant", "acme"]),
    "users remove-grant": (None, ["users", "remove-grant", LEAD, "--role", "finance",
                                  "--tenant", "acme"]),
    "users list": (["users", "list"], None),
    "tokens create": (None, ["tokens", "create", "nobody@acme.example"]),
    "tokens list": (["tokens", "list"], None),
    "tokens revoke": (None, ["tokens", "revoke", "tok-nope"]),
    # A bad or unreachable SIGNOFF_DATABASE_URL is 3: tests/test_db_cli.py.
    "db upgrade": (["db", "upgrade"], None),
    "db status": (["db", "status"], None),
    # Needs a PostgreSQL target; tests/test_migrate.py runs it (a refused second migrate is 1,
    # a bad or unreachable --to is 3).
    "migrate": (None, None),
    # With no queue configured; tests/test_queue.py runs them against PostgreSQL.
    "queue upgrade": (None, ["queue", "upgrade"]),
    "worker": (None, ["worker", "--concurrency", "2"]),
}
BAD_VALUES = [
    ["runs", "--status", "bogus"],
    ["traces", "--since", "yesterday"],
    ["audit", "verify", "--head", "garbage"],
    ["prune", "--older-than", "soon"],
    ["eval", "--set", "bogus"],
    ["worker", "--sweep-every", "soon"],
]


def command_names(group: typer.Typer) -> set[str]:
    names = set()
    for info in group.registered_commands:
        names.add(info.name or info.callback.__name__.replace("_", "-"))  # type: ignore[union-attr]
    for sub in group.registered_groups:
        names |= {f"{sub.name} {name}" for name in command_names(sub.typer_instance)}  # type: ignore[arg-type]
    return names


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | Path]:
    """A data directory with a waiting run, a resolved one and one whose process died."""
    root = tmp_path_factory.mktemp("exit-codes") / "home"
    runner = Runner(Home(root), recorder_factory=recorder_factory())
    support = get_workflow("support")
    runner.ensure_domain_db(support, reset=True)
    waiting = runner.start("support", sample("TKT-1002"), requester="ops@signoff.local")
    done = runner.start("support", sample("TKT-1001"), requester="ops@signoff.local")
    crashed = "run-c0ffee0001"
    ticket = sample("TKT-1003")
    runner.runs.create(run_id=crashed, workflow="support", workflow_version=support.version,
                       tenant_id=ticket.tenant_id, ticket_id=ticket.ticket_id,
                       customer_id=ticket.customer_id, requester="ops@signoff.local",
                       policy_version=None, inputs=dict(initial_inputs(crashed, ticket,
                                                                       time.time())),
                       lease_owner="elsewhere:1:dead", lease_ttl=-1)
    runner.close()
    assert waiting.status == "waiting_approval" and done.status == "resolved"
    return {"root": root, WAITING: waiting.run_id, DONE: done.run_id, CRASHED: crashed}


@pytest.fixture
def data(template: dict[str, str | Path], tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> dict[str, str | Path]:
    root = tmp_path / "home"
    shutil.copytree(template["root"], root)
    monkeypatch.setenv("SIGNOFF_HOME", str(root))
    monkeypatch.delenv("SIGNOFF_QUEUE_URL", raising=False)  # decisions are driven here
    return {**template, "root": root}


def invoke(data: dict[str, str | Path], argv: list[str]):  # noqa: ANN201 - click Result
    filled = [str(data.get(a, a)) for a in argv]
    return CliRunner().invoke(app, filled)


def one_error_line(result) -> str:  # noqa: ANN001 - click Result
    assert "Traceback" not in result.output, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_every_command_is_in_the_grid() -> None:
    assert command_names(app) == set(COMMANDS)


@pytest.mark.parametrize("name", [n for n, (ok, _) in COMMANDS.items() if ok])
def test_done_is_0(data: dict[str, str | Path], name: str) -> None:
    result = invoke(data, COMMANDS[name][0] or [])
    assert result.exit_code == 0, result.output
    assert "error" not in result.stderr


@pytest.mark.parametrize("name", [n for n, (_, bad) in COMMANDS.items() if bad])
def test_a_user_mistake_is_1(data: dict[str, str | Path], name: str) -> None:
    result = invoke(data, COMMANDS[name][1] or [])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    if name != "policy check":  # prints FILE: message per problem, each an error: line
        one_error_line(result)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_an_unknown_option_is_2(data: dict[str, str | Path], name: str) -> None:
    result = invoke(data, [*name.split(), "--no-such-option"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("argv", BAD_VALUES, ids=[" ".join(a[:2]) for a in BAD_VALUES])
def test_a_bad_option_value_is_2_in_one_line(data: dict[str, str | Path],
                                             argv: list[str]) -> None:
    result = invoke(data, argv)
    assert result.exit_code == 2, result.output
    one_error_line(result)


def test_an_unknown_status_names_the_valid_ones(data: dict[str, str | Path]) -> None:
    line = one_error_line(invoke(data, ["runs", "--status", "waiting"]))
    assert line == ("error: --status must be one of running, waiting_approval, queued, blocked, "
                    "escalated, failed, refused, rejected, resolved, recommended, not "
                    "'waiting'")


def test_a_bad_setting_names_the_variable(data: dict[str, str | Path],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNOFF_PLANNER_TIMEOUT", "abc")
    result = invoke(data, ["status", WAITING])
    assert result.exit_code == 1
    assert "SIGNOFF_PLANNER_TIMEOUT" in one_error_line(result)


def _empty_checkpoints(root: Path) -> None:
    (root / "checkpoints.db").write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        (root / f"checkpoints.db{suffix}").unlink(missing_ok=True)


def _truncated_checkpoints(root: Path) -> None:
    path = root / "checkpoints.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _home_is_a_file(root: Path) -> None:
    shutil.rmtree(root)
    root.write_text("not a directory\n")


def _registry_not_a_database(root: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        (root / f"control.db{suffix}").unlink(missing_ok=True)
    (root / "control.db").write_bytes(b"this is not sqlite" * 400)


DAMAGE = {"empty checkpoints.db": _empty_checkpoints,
          "truncated checkpoints.db": _truncated_checkpoints,
          "SIGNOFF_HOME is a file": _home_is_a_file,
          "control.db is not a database": _registry_not_a_database}
USES_CHECKPOINTS = {"status", "approve", "confirm", "reject", "edit", "policy explain"}
USES_REGISTRY = {"run", "runs", "status", "approve", "reject", "edit", "resume", "kill",
                 "policy explain", "prune", "users add", "users list", "tokens list",
                 "db upgrade", "db status"}
MUST_FAIL = {
    "empty checkpoints.db": {"status", "approve", "reject", "edit"},
    "truncated checkpoints.db": USES_CHECKPOINTS | {"resume", "run"},
    "SIGNOFF_HOME is a file": {n for n, (ok, _) in COMMANDS.items() if ok} - {"policy check"},
    "control.db is not a database": USES_REGISTRY,
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("name", [n for n, (ok, _) in COMMANDS.items() if ok])
def test_a_damaged_data_directory_is_3_in_one_line(data: dict[str, str | Path], damage: str,
                                                   name: str) -> None:
    root = Path(data["root"])
    DAMAGE[damage](root)
    result = invoke(data, COMMANDS[name][0] or [])
    assert "Traceback" not in result.output, result.output
    if name in MUST_FAIL[damage]:
        assert result.exit_code == 3, result.output
    assert result.exit_code in (0, 3), result.output
    if result.exit_code == 3:
        one_error_line(result)
    if root.is_dir() and damage != "control.db is not a database":
        with sqlite3.connect(root / "control.db") as conn:
            status = conn.execute("SELECT status FROM runs WHERE run_id = ?",
                                  (data[WAITING],)).fetchone()[0]
        if result.exit_code == 3:  # nothing was changed
            assert status == "waiting_approval"


def test_an_internal_error_is_4_in_one_line(data: dict[str, str | Path],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Runner, run_id: str) -> None:
        raise KeyError("step")

    monkeypatch.setattr(Runner, "status", broken)
    result = invoke(data, ["status", WAITING])
    assert result.exit_code == 4, result.output
    assert one_error_line(result).startswith("error: internal error: KeyError: 'step'")


def test_help_loads_no_graph_model_or_store() -> None:
    """`signoff --help` answers without importing LangGraph, LangChain, the evals or the
    observability stores (it took seconds when it did); the names the CLI repeats to stay
    light match the library's."""
    import subprocess
    import sys

    probe = ("import sys\n"
             "from typer.testing import CliRunner\n"
             "from cli.main import app\n"
             "assert CliRunner().invoke(app, ['--help']).exit_code == 0\n"
             "heavy = ('langchain_core', 'langgraph', 'openai', 'evals', 'observability')\n"
             "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in heavy}))\n")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=ROOT, timeout=60, check=True).stdout.strip()
    assert loaded == "[]"

    import cli.evals
    import cli.main
    import evals.gate
    import graph.runner

    assert cli.main.SHADOW_STATUS == graph.runner.SHADOW_STATUS
    assert cli.evals.THRESHOLDS_FILE == evals.gate.THRESHOLDS_FILE
