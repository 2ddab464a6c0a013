"""Rendered PNG views of points with per-point colours (z-buffer splats, the simulator's renderer)."""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from .._fileio import atomic_path
from ..render import fill_holes, point_spacing, render_depth


def render_png(path: str | os.PathLike[str], coords: torch.Tensor, colors: np.ndarray, cam_to_world: np.ndarray,
               K: np.ndarray, size: tuple[int, int] = (320, 240), background: int = 255) -> None:
    """Render ``(N, 3) uint8`` point colours from a camera and write a PNG atomically."""
    vals = torch.from_numpy(np.asarray(colors, dtype=np.float32))
    depth, img = render_depth(coords, cam_to_world, K, size, point_spacing(coords), values=vals)
    depth, img = fill_holes(depth, img)  # type: ignore[arg-type]  # values given: an image is rendered
    arr = img.numpy().round().clip(0, 255).astype(np.uint8)
    arr[depth.numpy() <= 0] = background
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")
