"""The one error type for user mistakes.

A ``UserError`` is something the user can fix (a bad option, a missing or
malformed file, an empty split). The command-line entry points turn it into a
one-line message on stderr and a non-zero exit; every other exception is a bug
and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A mistake in the user's input: config values, files or data."""


def data_error(path: str | Path, line: int | None, message: str) -> UserError:
    """A ``UserError`` that points at ``path:line`` (line is 1-based; None for the whole file)."""
    where = f"{path}:{line}" if line is not None else str(path)
    return UserError(f"{where}: {message}")


def is_positive_int(value: object) -> bool:
    """An int >= 1, and not a bool (to Python, True is the int 1)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_choice(name: str, value: object, choices: list[str] | tuple[str, ...]) -> None:
    """Raise a ``UserError`` naming the valid choices when ``value`` is not one of them."""
    if value not in choices:
        raise UserError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
