import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.main import GuardedTyper
from cli.observability import register
from graph.runner import Home
from observability import Recorder
from observability.testing import FakeClock, ToolSpec, record_run
from tests.stores import execute

runner = CliRunner()


def make_app(home: Home | Path) -> typer.Typer:
    app = GuardedTyper()  # the CLI's own kind: its guard turns errors into exit codes
    data = home if isinstance(home, Home) else Home(home)
    register(app, lambda: data)
    return app


@pytest.fixture
def home(backend_home: Home) -> Home:
    """Two recorded runs, on each backend of the grid."""
    with Recorder(backend_home, clock=FakeClock(now=1_700_000_000.0)) as recorder:
        record_run(
            recorder,
            "r-ok",
            completed=True,
            model_calls=[("gpt-4o", 1_000_000, 0, 0.4)],
            tool_calls=[ToolSpec("lookup_order")],
            customer_id="C-1",
        )
        record_run(
            recorder,
            "r-esc",
            outcome="escalated",
            reason="refund over limit",
            tool_calls=[ToolSpec("refund", mutation=True)],
            customer_id="C-2",
            decisions=[("gate", "yellow", "R-LIMIT", "over 100")],
        )
    return backend_home


def test_traces_searches_with_flags(home: Home) -> None:
    result = runner.invoke(make_app(home), ["traces", "--customer", "C-2", "--json"])
    assert result.exit_code == 0, result.output
    assert '"run_id": "r-esc"' in result.output
    assert "r-ok" not in result.output
    table = runner.invoke(
        make_app(home),
        ["traces", "--tool", "lookup_order", "--since", "2023-01-01", "--until", "2030-01-01"],
    )
    assert table.exit_code == 0, table.output
    assert "r-ok" in table.output and "1 run(s)" in table.output


def test_traces_rejects_a_bad_date_in_one_line(home: Home) -> None:
    result = runner.invoke(make_app(home), ["traces", "--since", "yesterday"])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "--since must be an ISO date" in result.stderr


def test_report_prints_metrics_and_json(home: Home) -> None:
    result = runner.invoke(make_app(home), ["report"], terminal_width=160)
    assert result.exit_code == 0, result.output
    assert "refund over limit" in result.output
    assert "$2.5000" in result.output  # per successful outcome: $2.50 / 1 resolved run
    as_json = runner.invoke(make_app(home), ["report", "--json"])
    assert '"cost_per_success_usd": 2.5' in as_json.output


def test_audit_verify_reports_intact_then_tampered(home: Home) -> None:
    result = runner.invoke(make_app(home), ["audit", "verify"])
    assert (result.exit_code, result.output.strip()) == (0, "audit log intact: 7 entries")
    execute(home, "audit", "UPDATE audit SET payload = '{}' WHERE seq = 4")
    result = runner.invoke(make_app(home), ["audit", "verify"])
    assert result.exit_code == 1
    assert result.output.startswith("audit log tampered: entry 4: ")


def test_audit_head_then_verify_against_it(home: Home) -> None:
    printed = runner.invoke(make_app(home), ["audit", "head"])
    assert printed.exit_code == 0, printed.output
    assert re.fullmatch(r"7:[0-9a-f]{64}\n", printed.output)
    head = printed.output.strip()
    result = runner.invoke(make_app(home), ["audit", "verify", "--head", head])
    assert (result.exit_code, result.output.strip()) == (
        0, "audit log intact: 7 entries, and holds entry 7 of the head given")
    execute(home, "audit", "DELETE FROM audit WHERE seq >= 5")  # cut short: still links
    assert runner.invoke(make_app(home), ["audit", "verify"]).exit_code == 0
    result = runner.invoke(make_app(home), ["audit", "verify", "--head", head])
    assert result.exit_code == 1
    assert result.output.startswith("audit log tampered: entry 7: the pinned entry is missing")


@pytest.mark.parametrize("head", ["latest", "6:abc", "6:" + "z" * 64])
def test_audit_verify_with_a_malformed_head_is_a_one_line_error(home: Home, head: str) -> None:
    before = execute(home, "audit", "SELECT * FROM audit ORDER BY seq")
    result = runner.invoke(make_app(home), ["audit", "verify", "--head", head])
    assert result.exit_code == 2
    assert re.fullmatch(r"error: a head is SEQ:HASH [^\n]+\n", result.stderr), result.stderr
    assert execute(home, "audit", "SELECT * FROM audit ORDER BY seq") == before


def test_traces_purge(home: Home) -> None:
    result = runner.invoke(make_app(home), ["traces-purge", "--older-than-days", "0"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("purged 2 run(s)")
    assert runner.invoke(make_app(home), ["audit", "verify"]).exit_code == 0


@pytest.mark.parametrize(
    "args",
    [["traces"], ["report"], ["audit", "verify"], ["audit", "head"],
     ["traces-purge", "--older-than-days", "1"]],
)
@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_missing_or_corrupt_databases_give_one_line_errors(
    tmp_path: Path, args: list[str], damage: str
) -> None:
    if damage == "corrupt":
        for name in ("traces.db", "audit.db"):
            (tmp_path / name).write_bytes(b"not a database at all" * 200)
    result = runner.invoke(make_app(tmp_path), args)
    assert result.exit_code == 3, result.output  # a damaged or unusable data directory
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert re.fullmatch(r"error: [^\n]+\n", result.stderr), result.stderr
    assert "Traceback" not in result.output


def test_every_command_has_help_with_an_example(home: Home) -> None:
    app = make_app(home)
    for args in (["traces"], ["report"], ["audit", "verify"], ["audit", "head"], ["traces-purge"],
                 ["audit"]):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, result.output
        if args != ["audit"]:
            assert "Example: signoff " in result.output, args


TEXT_SEARCHES = [
    ("refund", ["r-esc"]),
    ("ORDER", ["r-esc", "r-ok"]),
    ('"where is my order"', ["r-esc", "r-ok"]),
    ('"order where"', []),  # a quoted phrase is its words in that order
    ("lookup_order", ["r-ok"]),
    # Search syntax of either database is plain words: `!` does not negate, `|` is no OR,
    # and SQL in the text is words too.
    ("order & !where", ["r-esc", "r-ok"]),
    ("refund | lookup_order", []),
    ("NEAR(order where) where:* OR", []),
    ("'; DROP TABLE runs; --", []),
    ("(", []),
    ('""', []),
]


def test_traces_text_gives_the_same_runs_on_each_backend(home: Home) -> None:
    for text, expected in TEXT_SEARCHES:
        result = runner.invoke(make_app(home), ["traces", "--text", text, "--json"])
        assert result.exit_code == 0, (text, result.output)
        found = sorted(re.findall(r'"run_id": "([^"]+)"', result.output))
        assert found == expected, text
    assert execute(home, "traces", "SELECT count(*) FROM runs") == [(2,)]
