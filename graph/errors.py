"""Errors a user can cause; the CLI prints them as one line and exits non-zero."""


class SignoffError(Exception):
    """A user-facing error with a one-line message; nothing was changed."""


class RunNotFound(SignoffError):
    """No run has that id."""


class RunBusy(SignoffError):
    """Another process holds the run's lease."""


class NotWaiting(SignoffError):
    """The run is not waiting for a human decision."""


class BadDecision(SignoffError):
    """An approval, rejection or edit that cannot be accepted."""


class StaleDecision(SignoffError):
    """A decision names a held call that is no longer the one the run waits on."""


class DamagedData(SignoffError):
    """The data directory, or a database in it, is damaged or unusable (empty, truncated, not
    a database, not a directory); nothing was changed. The CLI exits 3 for it."""


class StoreUnavailable(DamagedData):
    """The configured database cannot be reached or used (down, refused, wrong URL, schema
    not upgraded); nothing was changed. Exits 3 like damaged data."""


class PluginError(SignoffError):
    """A workflow plugin (an entry point or a SIGNOFF_WORKFLOWS entry) that cannot be loaded:
    not importable, no such attribute, not a Workflow, or taking a shipped workflow's name."""
