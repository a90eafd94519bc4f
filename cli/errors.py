"""The exit codes every `signoff` command ends with (README, "Exit codes"). `cli.main.guarded`
is the one place that turns an exception into one of them."""

from collections.abc import Callable
from typing import Any

from graph.errors import SignoffError

DONE = 0
"""The command did what it says."""
REFUSED = 1
"""A user mistake (unknown run, bad identity) or a refused action (not allowed, checks failed)."""
USAGE = 2
"""The command line itself is wrong: unknown option, bad value for an option (click's own)."""
DAMAGED = 3
"""The data directory or a database in it is damaged or unusable (empty or truncated file,
not a database, SIGNOFF_HOME that is not a directory)."""
INTERNAL = 4
"""A bug in signoff: reported in one line (SIGNOFF_TRACEBACK=1 shows the traceback)."""


class BadUsage(SignoffError):
    """A value on the command line that the command cannot use; exits USAGE."""


def read_only(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a command that only reads: it works on a read-only data directory (an auditor's
    copy), reading a private snapshot of it (see cli.main.home)."""
    fn.read_only = True  # type: ignore[attr-defined]
    return fn
