"""Exception types with a fixed meaning for the CLI's exit codes.

* :class:`UsageError` and :class:`InputError` → exit 2 (bad usage or bad input).
* Any other :class:`EditkitError` → exit 1 (runtime failure).
"""

from __future__ import annotations


class EditkitError(Exception):
    """Base class of editkit's own errors (exit code 1 in the CLI)."""

    exit_code = 1


class UsageError(EditkitError):
    """Bad command-line usage: unknown names, invalid option values (exit code 2)."""

    exit_code = 2


class InputError(EditkitError):
    """Bad input data: malformed records, unreadable files (exit code 2)."""

    exit_code = 2


class NumericalError(EditkitError):
    """A non-finite residual or update; raised before any weight is written (exit code 1)."""
