"""Colour and depth images."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .._optional import require
from ..errors import InputError
from .arrays import load_npy

#: channel names tried, in order, in a multi-channel depth EXR (a single-channel EXR is read whatever its name)
EXR_DEPTH_CHANNELS = ("Z", "R", "Y")


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
    """Read a 16-bit depth PNG, a 2-D ``.npy`` array or a float ``.exr`` (extra ``capture``) as
    ``(H, W) float32`` metres (``raw / scale``), 0 where invalid or not finite.

    Args:
        scale: raw units per metre (1000 for millimetres, 4000 for Matterport3D, 1 for float metres).
        invalid: raw integer values that mean "no measurement" (e.g. 0 and 65535 for 7-Scenes).
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        raw = load_npy(path)
        if raw.ndim != 2:
            raise InputError(f"depth array must be 2-D (H, W), got shape {raw.shape}", path)
    elif path.suffix.lower() == ".exr":
        raw = read_exr_channel(path)
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


def read_exr_channel(path: Path) -> np.ndarray:
    """The depth channel of an OpenEXR file as ``(H, W) float32`` (raw values): its only channel, else the
    first of :data:`EXR_DEPTH_CHANNELS` it holds. Needs the ``capture`` extra (``openexr``)."""
    exr = require("OpenEXR", "capture", feature="reading EXR depth")
    if not path.is_file():
        raise InputError("file not found", path)
    try:
        with exr.File(str(path), separate_channels=True) as f:
            channels = {name: np.asarray(c.pixels) for name, c in f.channels().items()}
    except Exception as exc:  # noqa: BLE001 - the binding raises RuntimeError (and others) on corrupt files
        raise InputError(f"not a readable OpenEXR file ({exc})", path) from None
    names = [n for n in EXR_DEPTH_CHANNELS if n in channels]
    if len(channels) != 1 and not names:
        raise InputError(f"EXR has channels {sorted(channels)}; expected one channel or one of "
                         f"{', '.join(EXR_DEPTH_CHANNELS)}", path)
    raw = channels[next(iter(channels))] if len(channels) == 1 else channels[names[0]]
    if raw.ndim != 2 or raw.dtype.kind != "f":
        raise InputError(f"EXR depth must be a 2-D float channel, got {raw.dtype} of shape {raw.shape}", path)
    return raw.astype(np.float32, copy=False)
