"""Calling the CLI in-process the way a user would, and reading its one-line errors."""

from __future__ import annotations

from typer.testing import CliRunner

from cli.main import app


def signoff(*args: str):  # noqa: ANN201 - click Result
    return CliRunner().invoke(app, list(args))


def one_error_line(result) -> str:  # noqa: ANN001 - click Result
    """The command's one `error:` line on stderr (and no traceback anywhere)."""
    assert "Traceback" not in result.output, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]
