"""Loading released Sonata / PTv3 checkpoints ``{"config": {...}, "state_dict": {...}}``.

The native modules carry the official names, so keys load as they are. The one mapping is the
layout of the submanifold convolution weights (``*.cpe.0.weight``): spconv stores
``(C_out, kx, ky, kz, C_in)``, :class:`~geopurify.student.sparse.SparseConv3d` stores
``(kx*ky*kz, C_in, C_out)`` with the offsets in the same ``(dx, dy, dz)`` row-major order
(:func:`spconv_to_native`). Any missing or unexpected key (or a shape mismatch) is an
:class:`~geopurify.errors.InputError` naming them.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ...errors import InputError
from .config import PTv3Config
from .model import PointTransformerV3


def spconv_to_native(weight: torch.Tensor) -> torch.Tensor:
    """``(C_out, k, k, k, C_in)`` spconv kernel -> ``(k**3, C_in, C_out)`` (the one key mapping)."""
    c_out, *ks, c_in = weight.shape
    return weight.permute(1, 2, 3, 4, 0).reshape(ks[0] * ks[1] * ks[2], c_in, c_out)


def native_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A released state dict with every spconv kernel in the native layout."""
    return {k: spconv_to_native(v) if k.endswith("cpe.0.weight") and v.dim() == 5 else v
            for k, v in state_dict.items()}


def _short(keys: list[str], n: int = 8) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def build_model(checkpoint: dict[str, Any], source: str | os.PathLike[str] | None = None) -> PointTransformerV3:
    """The native encoder of a checkpoint dict, in eval mode, its weights loaded strictly."""
    if not isinstance(checkpoint, dict) or not {"config", "state_dict"} <= set(checkpoint):
        raise InputError("not a Sonata checkpoint: expected a dict with 'config' and 'state_dict'", source)
    try:
        cfg = PTv3Config.from_dict(dict(checkpoint["config"]))
    except InputError as exc:
        raise (exc.at(source) if source is not None else exc) from None
    model = PointTransformerV3(cfg)
    state = native_state_dict(checkpoint["state_dict"])
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        parts = ([f"missing keys: {_short(missing)}"] if missing else []) + \
                ([f"unexpected keys: {_short(unexpected)}"] if unexpected else [])
        raise InputError("checkpoint does not fit its config; " + "; ".join(parts), source)
    bad = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in own.items()
           if tuple(state[k].shape) != tuple(v.shape)]
    if bad:
        raise InputError(f"checkpoint weights have the wrong shape: {_short(bad, 4)}", source)
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``.pth`` checkpoint with ``weights_only=True`` (no code runs from the file)."""
    p = Path(path)
    if not p.is_file():
        raise InputError("Sonata checkpoint not found", p)
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"cannot read the checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]})", p) \
            from None


def load_model(path: str | os.PathLike[str]) -> PointTransformerV3:
    """:func:`build_model` of the checkpoint file at ``path``."""
    return build_model(load_checkpoint(path), path)


__all__ = ["build_model", "load_checkpoint", "load_model", "native_state_dict", "spconv_to_native"]
