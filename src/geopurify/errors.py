"""Exceptions raised by geopurify.

Every problem with user-supplied data raises :class:`InputError` (a ``ValueError``), whose
message starts with the offending file when there is one: ``"<path>: <what is wrong>"``. The
command-line interface prints that one line and exits non-zero, without a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path


class GeopurifyError(Exception):
    """Base class of every exception this package raises on purpose."""


class InputError(GeopurifyError, ValueError):
    """Invalid or unreadable input data.

    Attributes:
        problem: what is wrong, in words.
        path: the file or folder at fault, or ``None`` for in-memory data.
    """

    def __init__(self, problem: str, path: str | os.PathLike[str] | None = None) -> None:
        self.problem = problem
        self.path = None if path is None else Path(path)
        super().__init__(problem if path is None else f"{path}: {problem}")

    def at(self, path: str | os.PathLike[str]) -> InputError:
        """The same problem attributed to ``path`` (keeps an existing, more specific path)."""
        if self.path is not None:
            return self
        return type(self)(self.problem, path)


class MissingDependencyError(GeopurifyError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class UnknownNameError(GeopurifyError, KeyError):
    """A name that no registry (encoders, teachers, layouts, label sets, ...) knows; the message lists
    the names there are."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


class PluginError(GeopurifyError):
    """A third-party plugin (entry point) failed to load."""
