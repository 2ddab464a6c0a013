"""Shared checks for the frozen dataclasses at the public boundaries."""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import torch

from .errors import InputError


def all_finite(value: torch.Tensor) -> bool:
    """No NaN or inf in ``value``; one reduction pass without a mask the size of the input (``min``/``max``
    propagate NaN), cheaper than ``isfinite(value).all()`` on large tensors."""
    if not value.dtype.is_floating_point or value.numel() == 0:
        return True
    lo, hi = torch.aminmax(value)
    return bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))


def as_tensor(name: str, value: object, dtype: torch.dtype, shape: tuple[int | None, ...],
              *, finite: bool = True) -> torch.Tensor:
    """Return ``value`` as a CPU/any-device tensor after checking dtype, shape and finiteness.

    ``shape`` entries of ``None`` match any size. numpy arrays are accepted (not cast: a wrong
    dtype is an error, so that silent precision or unit changes cannot happen).
    """
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise InputError(f"{name} must be a tensor or numpy array, got {type(value).__name__}")
    if value.dtype != dtype:
        raise InputError(f"{name} must have dtype {dtype}, got {value.dtype}")
    if value.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, value.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise InputError(f"{name} must have shape {want}, got {tuple(value.shape)}")
    if finite and not all_finite(value):
        bad = int((~torch.isfinite(value)).sum())
        raise InputError(f"{name} contains {bad} NaN or inf values")
    return value


def finite_fields(config: object) -> None:
    """Raise ``ValueError`` naming the first float field of a config dataclass that is NaN or infinite
    (``None`` is allowed where a field is optional)."""
    for f in dataclasses.fields(config):  # type: ignore[arg-type]
        v = getattr(config, f.name)
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{type(config).__name__}.{f.name} must be a finite number, got {v}")


def check_source(source: object, what: str) -> None:
    """A ``source=`` that looks like a local path (``/``, ``./``, ``../``, ``~`` or a trailing ``/``) must exist;
    anything else may be a hub id. Raises :class:`InputError` at once instead of a network wait."""
    s = str(source)
    looks_local = s.startswith(("/", "./", "../", "~")) or s.endswith("/") or os.path.isabs(s)
    if looks_local and not os.path.exists(os.path.expanduser(s)):
        raise InputError(f"{what} not found (a local path; a hub id looks like 'org/name')", s)
