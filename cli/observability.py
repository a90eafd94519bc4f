"""CLI commands over the observability library: traces, report, audit verify and head,
traces-purge."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Column, Table

from checkpoints.control_schema import STORE
from checkpoints.runs import RunStore, audit_head_written
from cli.errors import BadUsage, read_only
from graph.errors import SignoffError

if TYPE_CHECKING:
    from graph.runner import Home

# The observability package loads when one of its commands runs, so `signoff --help` stays
# fast; its names are imported inside each command.


def _bad_usage(message: str) -> NoReturn:
    raise BadUsage(message)


def _parse_time(flag: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        _bad_usage(f"{flag} must be an ISO date or datetime, e.g. 2025-01-31T09:00, got {value!r}")
    # A naive time is local time, as a user typing it would expect.
    return parsed if parsed.tzinfo else parsed.astimezone()


def _when(epoch: float | None) -> str:
    return "" if epoch is None else datetime.fromtimestamp(epoch).isoformat(timespec="seconds")


def _audit_head_kept() -> tuple[int, str] | None:
    """The audit head the run registry (on the CLI's backend) last kept."""
    from cli.main import home as stores

    with closing(stores().open_backend()) as backend:
        return audit_head_written(backend)


def _note_audit_head(head: tuple[int, str]) -> None:
    """Keep `head` in the run registry, when there is one (nothing ran yet otherwise)."""
    from cli.main import home as stores

    with closing(stores().open_backend()) as backend:
        existing = backend.open_existing(STORE)
        if existing is None:
            return
        existing.close()
        with closing(RunStore.open(backend)) as store:
            store.note_audit_head(*head)


def register(app: typer.Typer, home: Callable[[], Home]) -> None:
    """Add `traces`, `report`, `audit verify`, `audit head` and `traces-purge` to `app`.

    `home` returns the Home whose backend holds the trace store and the audit log (SQLite
    files in the data directory, or PostgreSQL); it is called per command.
    """

    @app.command("traces")
    @read_only
    def traces(
        run: Annotated[str | None, typer.Option("--run", help="Run id.")] = None,
        customer: Annotated[str | None, typer.Option("--customer", help="Customer id.")] = None,
        tool: Annotated[
            str | None, typer.Option("--tool", help="Runs that called this tool.")
        ] = None,
        outcome: Annotated[
            str | None,
            typer.Option("--outcome", help="resolved, escalated, blocked, rejected or failed."),
        ] = None,
        text: Annotated[
            str | None,
            typer.Option("--text", help="Words in inputs, tool calls or reasons (redacted text)."),
        ] = None,
        since: Annotated[str | None, typer.Option("--since", help="ISO start time.")] = None,
        until: Annotated[str | None, typer.Option("--until", help="ISO end time.")] = None,
        limit: Annotated[int, typer.Option("--limit", help="At most this many runs.")] = 50,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    ) -> None:
        """Search recorded runs, newest first.

        Example: signoff traces --customer CUS-0002 --outcome escalated --since 2026-01-01
        """
        from observability.search import search_traces

        rows = search_traces(
            home(),
            run_id=run,
            customer_id=customer,
            tool=tool,
            outcome=outcome,
            text=text,
            since=_parse_time("--since", since),
            until=_parse_time("--until", until),
            limit=limit,
        )
        if as_json:
            for row in rows:
                typer.echo(json.dumps(row, sort_keys=True))
            return
        table = Table("workflow", "customer", "outcome", "reason", "started", "cost")
        # The id is what a reader copies into the next command: never cut, piped or not.
        table.columns.insert(0, Column("run", no_wrap=True,
                                       min_width=max([len(r["run_id"]) for r in rows] or [3])))
        for row in rows:
            cost = "" if row["cost_usd"] is None else f"${row['cost_usd']:.4f}"
            table.add_row(
                row["run_id"],
                f"{row['workflow']}@{row['workflow_version']}",
                row["customer_id"] or "",
                row["outcome"] or "running",
                row["reason"] or "",
                _when(row["started_at"]),
                cost,
            )
        Console(markup=False, width=None if sys.stdout.isatty() else 120).print(table)
        typer.echo(f"{len(rows)} run(s)")

    @app.command("report")
    @read_only
    def report(
        prices: Annotated[
            Path | None, typer.Option("--prices", help="TOML price table overriding the defaults.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    ) -> None:
        """Success rate, escalation reasons, latency, tool-call quality and cost per success.

        Example: signoff report --prices prices.toml
        """
        from observability.prices import PriceTable
        from observability.render import render_report
        from observability.report import compute_report

        try:
            table = PriceTable.from_toml(prices) if prices else None
        except (OSError, ValueError) as exc:
            raise SignoffError(f"cannot load price table {prices}: {exc}") from None
        result = compute_report(home(), prices=table)
        if as_json:
            typer.echo(json.dumps(dataclasses.asdict(result), sort_keys=True))
            return
        Console(markup=False).print(render_report(result))

    # The same kind of Typer as `app`, so the audit commands run under its guard too.
    audit = type(app)(help="The tamper-evident audit log.", no_args_is_help=True)
    app.add_typer(audit, name="audit")

    @audit.command("verify")
    @read_only
    def audit_verify(
        head: Annotated[str | None, typer.Option(
            "--head", metavar="SEQ:HASH",
            help="A head `signoff audit head` printed earlier: also check that entry is "
                 "still there, unchanged.")] = None,
    ) -> None:
        """Check the audit log's hash chain, and that it still holds the newest entry the run
        registry saw written (or the head given); exit 1 naming the first bad entry if
        tampered, deleted or cut short.

        Example: signoff audit verify --head "$(tail -n 1 /mnt/elsewhere/audit-heads)"
        """
        from observability.audit import Head, missing_audit_file, verify_audit

        try:
            pinned = Head.parse(head) if head is not None else None
        except ValueError as exc:
            _bad_usage(str(exc))
        data = home()
        kept = _audit_head_kept()
        registry = Head(*kept) if kept is not None and pinned is None else None
        missing = missing_audit_file(data) if registry is not None else None
        if registry is not None and missing is not None:
            typer.echo(f"audit log tampered: {missing} is missing, but the run "
                       f"registry saw {registry.seq} entries written (head {registry})")
            raise typer.Exit(1)
        try:
            result = verify_audit(data, pinned or registry)
        except ValueError:
            if registry is None:
                raise
            # The registry's head was purged since (traces-purge); the chain and its anchor
            # still show whether what remains is intact.
            registry, result = None, verify_audit(data)
        if not result.ok:
            typer.echo(f"audit log tampered: entry {result.first_bad_seq}: {result.reason}")
            raise typer.Exit(1)
        against = (f", and holds entry {pinned.seq} of the head given" if pinned else
                   f", and holds entry {registry.seq}, the newest the run registry saw written"
                   if registry else "")
        typer.echo(f"audit log intact: {result.entries_checked} entries{against}")

    @audit.command("head")
    @read_only
    def audit_head_cmd() -> None:
        """Print the newest entry as SEQ:HASH; keep it where the log's writers cannot write.

        `signoff audit verify --head SEQ:HASH` then also catches a log rewritten with every
        hash recomputed, or cut short, which the chain alone cannot show.

        Example: signoff audit head >> /mnt/elsewhere/audit-heads
        """
        from observability.audit import audit_head

        typer.echo(str(audit_head(home())))

    @app.command("traces-purge")
    def traces_purge(
        older_than_days: Annotated[
            float,
            typer.Option(
                "--older-than-days", min=0, help="Purge runs that started more than N days ago."
            ),
        ],
        keep_audit: Annotated[
            bool, typer.Option("--keep-audit", help="Purge traces only; keep every audit entry.")
        ] = False,
    ) -> None:
        """Delete old traces and audit entries; the audit chain stays verifiable.

        Example: signoff traces-purge --older-than-days 90
        """
        from observability.audit import audit_head
        from observability.retention import purge

        data = home()
        result = purge(data, older_than_days, audit=not keep_audit)
        if not keep_audit:
            # The purge logged an entry: the registry keeps the new head, as writers do.
            _note_audit_head(audit_head(data))
        summary: dict[str, Any] = dataclasses.asdict(result)
        typer.echo(
            f"purged {summary['runs_deleted']} run(s), {summary['events_deleted']} event(s), "
            f"{summary['audit_entries_deleted']} audit entr(y/ies) before {_when(result.cutoff)}"
        )
