"""Colour and depth images."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import InputError
from .arrays import load_npy


def _open(path: Path) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)   # > 89 Mpx: refuse, do not decode
            img = Image.open(path)
            img.load()
        return img
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise InputError(f"image too large to decode safely ({exc})", path) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"not a readable image ({exc})", path) from None


def read_color(path: str | os.PathLike[str], size: tuple[int, int] | None = None) -> torch.Tensor:
    """Read a colour image (jpg, png, ...) as ``(H, W, 3) uint8`` RGB.

    Args:
        size: optional ``(W, H)`` to resize to (bilinear).
    """
    img = _open(Path(path)).convert("RGB")
    if size is not None and img.size != tuple(size):
        img = img.resize(tuple(size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(img).copy())


def read_depth(path: str | os.PathLike[str], scale: float, invalid: tuple[int, ...] = (0,)) -> torch.Tensor:
    """Read a 16-bit depth PNG, or a 2-D ``.npy`` array, as ``(H, W) float32`` metres (``raw / scale``),
    0 where invalid or not finite.

    Args:
        scale: raw units per metre (1000 for millimetres, 4000 for Matterport3D, 1 for float metres).
        invalid: raw integer values that mean "no measurement" (e.g. 0 and 65535 for 7-Scenes).
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        raw = load_npy(path)
        if raw.ndim != 2:
            raise InputError(f"depth array must be 2-D (H, W), got shape {raw.shape}", path)
    else:
        img = _open(path)
        raw = np.asarray(img)
        if raw.ndim != 2 or raw.dtype.kind not in "ui":
            raise InputError(f"depth must be a single-channel integer image, got mode {img.mode}", path)
        if raw.dtype.itemsize < 2:
            raise InputError(f"8-bit depth image (mode {img.mode}): depth must be 16-bit, in units of 1/{scale:g} m",
                             path)
    if raw.dtype.kind == "f":
        depth = (raw.astype(np.float64) / float(scale)).astype(np.float32)
        depth[~np.isfinite(depth)] = 0.0
        return torch.from_numpy(depth)
    raw = raw.astype(np.int64)
    depth = (raw / float(scale)).astype(np.float32)
    if invalid:
        depth[np.isin(raw, invalid)] = 0.0
    return torch.from_numpy(depth)
