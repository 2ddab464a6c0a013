"""Command-line flags built from config dataclasses, so that every default lives in one place.

A field ``depth_tolerance`` of :class:`~geopurify.lifting.LiftConfig` becomes ``--depth-tolerance``,
typed by its default, with the help text of the class docstring's ``Attributes:`` entry and the
default shown; a boolean field that defaults to True becomes ``--no-<name>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from typing import Any, TypeVar

from .errors import InputError

T = TypeVar("T")


def attribute_docs(cls: type) -> dict[str, str]:
    """``name -> text`` from the ``Attributes:`` section of a class docstring."""
    doc = cls.__doc__ or ""
    if "Attributes:" not in doc:
        return {}
    out: dict[str, str] = {}
    current = None
    for line in doc.split("Attributes:", 1)[1].splitlines():
        m = re.match(r"^\s{4,8}(\w+)(?: \([^)]*\))?: (.*)$", line)
        if m:
            current = m.group(1)
            out[current] = m.group(2).strip()
        elif current and line.strip():
            out[current] += " " + line.strip()
        elif not line.strip() and current:
            current = None
    return {k: v.replace("``", "").rstrip(".").replace("%", "%%") for k, v in out.items()}


def add_config_flags(parser: argparse.ArgumentParser, cls: type, names: list[str]) -> None:
    """Add one flag per field in ``names`` of the dataclass ``cls`` (module docstring)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    docs = attribute_docs(cls)
    for name in names:
        f = fields[name]
        default = f.default if f.default is not dataclasses.MISSING else None
        flag = "--" + name.replace("_", "-")
        text = docs.get(name, name.replace("_", " "))
        if isinstance(default, bool):
            if default:
                parser.add_argument("--no-" + name.replace("_", "-"), dest=name, action="store_false", help=text)
            else:
                parser.add_argument(flag, dest=name, action="store_true", help=text)
            continue
        kind: Any = type(default) if default is not None else (float if "float" in str(f.type) else str)
        parser.add_argument(flag, dest=name, type=kind, default=default, help=f"{text} (default: {default})")


def config_from_args(args: argparse.Namespace, cls: type[T], names: list[str], **fixed: Any) -> T:
    """``cls(**{name: args.name for name in names}, **fixed)``; invalid values are an :class:`InputError`."""
    try:
        return cls(**{n: getattr(args, n) for n in names}, **fixed)  # type: ignore[call-arg]
    except ValueError as exc:
        raise InputError(str(exc)) from None


def cuda_available() -> bool:
    import torch
    return torch.cuda.is_available()


def device_type(name: str) -> str:
    """``--device``: a torch device that exists here (``cuda`` only with a GPU)."""
    import torch
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise argparse.ArgumentTypeError(f"not a torch device: {name!r} ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError("CUDA is not available on this machine (use --device cpu)")
    return name


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    """``--device`` (default: ``cuda`` when available), checked by :func:`device_type`."""
    parser.add_argument("--device", type=device_type, default="cuda" if cuda_available() else "cpu",
                        help="cpu, cuda, cuda:1, ... (default: cuda when available)")
