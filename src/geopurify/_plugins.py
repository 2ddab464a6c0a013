"""Registries of named factories, extended by third-party packages through entry points."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any


def build_plugin(kind: str, group: str, registry: dict[str, Callable[..., Any]], name: str, **options: Any) -> Any:
    """Call the factory ``name`` from ``registry`` or the entry-point ``group`` with ``options``.

    Raises:
        KeyError: unknown name; the message lists the available ones (``kind`` names what they are).
    """
    available = dict(registry)
    for ep in entry_points(group=group):
        available.setdefault(ep.name, ep.load())
    if name not in available:
        raise KeyError(f"unknown {kind} {name!r}; available: {', '.join(sorted(available))}")
    return available[name](**options)
