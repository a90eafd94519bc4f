"""CLI commands over the checkpoint store: `signoff prune`."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from typing import TYPE_CHECKING, Annotated

import typer

from cli.errors import BadUsage

if TYPE_CHECKING:  # the checkpointer (LangGraph) loads when `prune` runs, not for --help
    from checkpoints.prune import PruneResult
    from graph.runner import Home


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n:.1f} GB"


def describe(result: PruneResult, older_than: str, where: str) -> str:
    """One line saying what a prune did; `where` names the checkpoints' file or tables."""
    runs = len(result.run_ids)
    if result.dry_run:
        return (f"would prune {runs} finished run(s) older than {older_than} "
                f"({result.checkpoints} checkpoints, {result.writes} writes); nothing deleted")
    if not runs:
        return f"nothing to prune: no finished run older than {older_than} has checkpoints"
    space = f"{_size(result.bytes_before)} -> {_size(result.bytes_after)}" \
        if result.bytes_after < result.bytes_before else \
        f"{_size(result.bytes_after)}, the freed space kept for new checkpoints"
    return (f"pruned {runs} finished run(s) older than {older_than}: {result.checkpoints} "
            f"checkpoints, {result.writes} writes; {where} {space}")


def register(app: typer.Typer, home: Callable[[], Home]) -> None:
    """Add `prune` to `app`; `home` returns where the stores are and is called per command."""

    @app.command("prune")
    def prune(
        older_than: Annotated[str, typer.Option(
            "--older-than", help="Age of a finished run, e.g. 7d, 12h, 30m, 45s, 2w.")],
        dry_run: Annotated[bool, typer.Option(
            "--dry-run", help="Count what would be deleted; delete nothing.")] = False,
    ) -> None:
        """Delete the checkpoints of runs that finished more than DURATION ago and reclaim the
        space. Waiting and running runs are never touched; run history, traces and the audit
        log are kept.

        Example: signoff prune --older-than 7d
        """
        from checkpoints.prune import parse_duration, prune_finished

        try:
            seconds = parse_duration(older_than)
        except ValueError as exc:
            raise BadUsage(f"--older-than: {exc}") from None
        with closing(home().open_backend()) as backend:
            result = prune_finished(backend, seconds, dry_run=dry_run)
            where = backend.where("checkpoints")
        typer.echo(describe(result, older_than.strip(), where))
