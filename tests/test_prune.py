"""`signoff prune --older-than DURATION`: finished runs' checkpoints go and the space is given
back; waiting and running runs, and recent ones, are left alone; on each backend of the grid."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from checkpoints.prune import PruneResult, parse_duration, prune_finished
from checkpoints.soak import SCENARIOS, forked_action
from cli.checkpoints import register
from cli.main import GuardedTyper
from graph.runner import Home, Runner
from graph.workflows import get_workflow
from tests.conftest import run_store

WORKFLOW = get_workflow("support")
TICKETS = {t.ticket_id: t for t in WORKFLOW.sample_tickets()}
DAY = 86400.0
APPROVE = {"action": "approve", "by": "lead@acme.example", "reason": "ok"}
FINISHED_OLD = ("resolved", "blocked", "rejected")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def threads(home: Home) -> dict[str, int]:
    """Checkpoints per run (thread) in `home`'s checkpointer, on either backend."""
    with closing(home.open_backend()) as backend, closing(backend.connect("checkpoints")) as conn:
        return {r[0]: r[1] for r in conn.execute(
            "SELECT thread_id, COUNT(*) FROM checkpoints GROUP BY thread_id")}


def prune(home: Home, older_than_s: float, **kwargs: object) -> PruneResult:
    with closing(home.open_backend()) as backend:
        return prune_finished(backend, older_than_s, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def aged_home(backend_home: Home) -> tuple[Home, dict[str, str], Clock]:
    """Runs of every kind, ten days old, plus one finished an hour ago."""
    clock = Clock()
    runner = Runner(backend_home, clock=clock)
    runner.ensure_domain_db(WORKFLOW, reset=True)
    runs = {}
    for name, ticket_id in (("resolved", "TKT-1001"), ("blocked", "TKT-1003"),
                            ("waiting", "TKT-1002"), ("rejected", "TKT-1002")):
        runs[name] = runner.start("support", TICKETS[ticket_id], requester="a@acme.example").run_id
    runner.decide(runs["rejected"], {**APPROVE, "action": "reject", "reason": "no receipt"})
    runner.close()
    # A run whose process died mid-way: `running`, its lease left to a dead pid.
    forked_action(backend_home, SCENARIOS["status-note"], "start", None, kill_at=20)
    with run_store(backend_home) as store:
        runs["crashed"] = next(r.run_id for r in store.list() if r.status == "running")
    clock.now += 10 * DAY
    recent = Runner(backend_home, clock=clock)
    runs["recent"] = recent.start("support", TICKETS["TKT-1005"], requester="a@acme.example").run_id
    recent.close()
    clock.now += 3600
    return backend_home, runs, clock


@pytest.mark.parametrize("text,seconds", [("7d", 7 * DAY), ("12h", 43200), ("30m", 1800),
                                          ("45s", 45), ("2w", 14 * DAY), (" 1D ", DAY),
                                          ("0s", 0)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "d", "-1d", "1.5h", "7x", "7 days", "1e3s"])
def test_bad_durations_are_one_line_errors(text: str) -> None:
    with pytest.raises(ValueError, match="a duration looks like 7d"):
        parse_duration(text)


def test_prune_deletes_old_finished_runs_and_reclaims_space(
        aged_home: tuple[Home, dict[str, str], Clock]) -> None:
    home, runs, clock = aged_home
    before = threads(home)
    assert all(run_id in before for run_id in runs.values())

    result = prune(home, 7 * DAY, now=clock.now)
    assert set(result.run_ids) == {runs[name] for name in FINISHED_OLD}
    assert result.checkpoints == sum(before[r] for r in result.run_ids)
    if home.database_url is None:  # VACUUM shrinks the file
        assert result.bytes_after < result.bytes_before
    # On Postgres plain VACUUM keeps the freed pages in the tables for the next checkpoints
    # (VACUUM FULL would lock out every run while it rewrites them).
    after = threads(home)
    for kept in ("waiting", "crashed", "recent"):
        assert after[runs[kept]] == before[runs[kept]], kept
    assert not set(result.run_ids) & set(after)
    # The registry still tells what happened to a pruned run.
    with run_store(home) as store:
        assert store.get(runs["resolved"]).status == "resolved"
    # Pruning again finds nothing; the waiting and the crashed run still carry on.
    assert prune(home, 7 * DAY, now=clock.now).run_ids == ()
    runner = Runner(home)
    assert runner.decide(runs["waiting"], APPROVE).status == "resolved"
    assert runner.resume(runs["crashed"]).status == "resolved"
    runner.close()


def test_policy_explain_says_a_pruned_run_was_pruned(
        aged_home: tuple[Home, dict[str, str], Clock]) -> None:
    from cli.main import app

    home, runs, clock = aged_home
    prune(home, 7 * DAY, now=clock.now)
    result = CliRunner().invoke(app, ["policy", "explain", runs["resolved"]])
    assert result.exit_code == 0, result.output
    assert "its checkpoints were pruned (`signoff prune`)" in result.output
    assert "outcome: resolved" in result.output
    assert "unfinished" not in result.output


def test_dry_run_deletes_nothing(aged_home: tuple[Home, dict[str, str], Clock]) -> None:
    home, runs, clock = aged_home
    before = threads(home)
    result = prune(home, 7 * DAY, now=clock.now, dry_run=True)
    assert len(result.run_ids) == 3 and result.dry_run
    assert threads(home) == before


def test_prune_command(aged_home: tuple[Home, dict[str, str], Clock],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    home, runs, clock = aged_home
    monkeypatch.setattr("checkpoints.prune.time.time", lambda: clock.now)
    app = GuardedTyper()
    register(app, lambda: home)

    @app.command()
    def other() -> None:  # a second command, so `prune` is a subcommand as in signoff
        """Unused."""

    cli = CliRunner()
    dry = cli.invoke(app, ["prune", "--older-than", "7d", "--dry-run"])
    assert dry.exit_code == 0 and dry.output.startswith("would prune 3 finished run(s)")
    done = cli.invoke(app, ["prune", "--older-than", "7d"])
    assert done.exit_code == 0, done.output
    assert done.output.startswith("pruned 3 finished run(s) older than 7d:")
    with closing(home.open_backend()) as backend:  # checkpoints.db, or the schema
        assert f"; {backend.where('checkpoints')} " in done.output
    again = cli.invoke(app, ["prune", "--older-than", "7d"])
    assert again.output.startswith("nothing to prune")
    assert runs["recent"] in threads(home)

    bad = cli.invoke(app, ["prune", "--older-than", "seven days"])
    assert bad.exit_code == 2
    assert bad.output.strip().splitlines() == [
        "error: --older-than: a duration looks like 7d, 12h, 30m, 45s or 2w, not 'seven days'"]
    assert "Traceback" not in bad.output
    help_text = cli.invoke(app, ["prune", "--help"]).output
    assert "Example: signoff prune --older-than 7d" in help_text


def test_prune_on_a_directory_without_signoff_data(tmp_path: Path) -> None:
    app = GuardedTyper()
    register(app, lambda: Home(tmp_path / "nothing-here"))
    app.command()(lambda: None)
    result = CliRunner().invoke(app, ["prune", "--older-than", "1d"])
    assert result.exit_code == 3  # an unusable data directory
    assert result.output.startswith("error: no run registry in")
