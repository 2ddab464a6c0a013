"""Registries of named factories, extended by third-party packages through entry points.

A :class:`Registry` holds the built-ins and looks entry points up lazily by name: listing the names
loads no plugin, and a plugin that fails to import breaks only a lookup of that name (with an error
naming it), never the others.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from .errors import InputError, PluginError, UnknownNameError

F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[F]):
    """Named factories of one ``kind`` (e.g. ``"encoder"``): built-ins, then the entry-point ``group``."""

    def __init__(self, kind: str, group: str, builtins: dict[str, F]) -> None:
        self.kind, self.group, self.builtins = kind, group, dict(builtins)

    def _entry_points(self) -> dict[str, Any]:
        return {ep.name: ep for ep in entry_points(group=self.group) if ep.name not in self.builtins}

    def names(self) -> list[str]:
        """Every registered name, sorted (plugins are not imported)."""
        return sorted({*self.builtins, *self._entry_points()})

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, name: object) -> bool:
        return name in self.builtins or name in self._entry_points()

    def get(self, name: str) -> F:
        """The factory called ``name``.

        Raises:
            UnknownNameError: no such name; the message lists the available ones.
            PluginError: the plugin's entry point cannot be loaded (its error is in the message).
        """
        if name in self.builtins:
            return self.builtins[name]
        eps = self._entry_points()
        if name not in eps:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}")
        try:
            return eps[name].load()
        except Exception as exc:  # noqa: BLE001 - any failure inside a third-party plugin
            raise PluginError(f"the {self.kind} plugin {name!r} ({eps[name].value}) cannot be loaded: "
                              f"{type(exc).__name__}: {exc}") from exc

    def build(self, name: str, **options: Any) -> Any:
        """``get(name)(**options)``, after :func:`check_options`.

        Raises:
            InputError: an option the factory does not take (the message lists those it takes).
        """
        factory = self.get(name)
        check_options(factory, options, f"the {self.kind} {name!r}")
        return factory(**options)


def check_options(factory: Callable[..., Any], options: dict[str, Any], what: str, *, positional: int = 0,
                  path: str | os.PathLike[str] | None = None) -> None:
    """Refuse keyword ``options`` that ``factory``'s signature does not take, before calling it (a factory
    taking ``**kwargs``, or without a signature, checks for itself). ``positional``: leading parameters the
    caller passes itself, left out of the list of options in the message.

    Raises:
        InputError: ``"<what> does not take X (it takes: ...)"``, naming ``path`` when given.
    """
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(options) - set(params))
    if unknown:
        takes = [k for k, p in list(params.items())[positional:] if p.kind is not inspect.Parameter.VAR_POSITIONAL]
        raise InputError(f"{what} does not take {', '.join(unknown)} (it takes: {', '.join(takes) or 'no options'})",
                         path)
