"""Optional heavy dependencies, imported lazily with an actionable error."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError


def require(module: str, extra: str, *, feature: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install.

    Args:
        module: dotted module name, e.g. ``"transformers"``.
        extra: the geopurify extra that provides it, e.g. ``"clip"``.
        feature: what needs it, for the message (defaults to the module name).

    Raises:
        MissingDependencyError: with ``pip install 'geopurify[<extra>]'`` in the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = feature or module
        raise MissingDependencyError(
            f"{what} needs the optional package '{module}', which is not installed; "
            f"install it with: pip install 'geopurify[{extra}]'"
        ) from exc
