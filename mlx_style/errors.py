"""The package's one error base class, and what each kind of error means for a command's exit status.

Every command exits 0 on success, 2 on bad usage or bad input (one line, no traceback), 1 on a failure mid-run.
Library code raises a subclass of ``MlxStyleError`` whose message is that one line, saying what to do next.
"""

from __future__ import annotations


class MlxStyleError(Exception):
    """An error a user can act on; ``str(error)`` is the one line a command prints."""

    exit_code = 2  # bad usage or input: found before any work was done


class RunFailure(MlxStyleError):
    """A run that started and could not finish (a lost source, a disk that filled up, a diverged loss)."""

    exit_code = 1


class UsageError(MlxStyleError, ValueError):
    """A setting or an input that cannot work, found before any work was done (a flag out of range, a style the
    network does not hold). A ``ValueError`` too, so callers of the library can catch it as one."""
