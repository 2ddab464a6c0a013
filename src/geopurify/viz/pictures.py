"""Rendered PNG views of points with per-point colours (z-buffer splats, the simulator's renderer), and
pictures a person reads without a report: a title, a class legend, a colour bar for heatmaps, and a
side-by-side panel of layers (colour | ground truth | direct | purified)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .._fileio import atomic_path
from ..camera import look_at
from ..io.scene import Scene
from ..render import fill_holes, point_spacing, render_depth
from .colors import heat_colors, label_colors, label_legend

Legend = Sequence[tuple[str, tuple[int, int, int]]]
TITLE_H, LEGEND_W, BAR_H, ROW_H = 22, 120, 30, 15


def _font(size: int = 12) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def render_view(coords: torch.Tensor, colors: np.ndarray, cam_to_world: np.ndarray, K: np.ndarray,
                size: tuple[int, int] = (320, 240), background: int = 255) -> np.ndarray:
    """``(H, W, 3) uint8`` image of the points (``(N, 3) uint8`` colours) seen from a camera."""
    vals = torch.from_numpy(np.asarray(colors, dtype=np.float32))
    depth, img = render_depth(coords, cam_to_world, K, size, point_spacing(coords), values=vals)
    depth, img = fill_holes(depth, img)  # type: ignore[arg-type]  # values given: an image is rendered
    arr = img.numpy().round().clip(0, 255).astype(np.uint8)
    arr[depth.numpy() <= 0] = background
    return arr


def annotate(img: np.ndarray, title: str | None = None, legend: Legend | None = None,
             colorbar: str | None = None) -> np.ndarray:
    """``img`` with a title band above, a class legend (name, colour) to the right and, with ``colorbar``
    (its label), the heat colour map from 0 to 1 below."""
    h, w = img.shape[:2]
    rows = len(legend or [])
    lw = LEGEND_W if rows else 0
    th, bh = (TITLE_H if title else 0), (BAR_H if colorbar else 0)
    canvas = Image.new("RGB", (w + lw, max(th + h + bh, th + 6 + rows * ROW_H)), (255, 255, 255))
    canvas.paste(Image.fromarray(img), (0, th))
    draw, font = ImageDraw.Draw(canvas), _font()
    if title:
        draw.text((4, 4), title, fill=(0, 0, 0), font=_font(13))
    for r, (name, rgb) in enumerate(legend or []):
        y = th + 4 + r * ROW_H
        draw.rectangle((w + 6, y + 1, w + 16, y + 11), fill=tuple(int(c) for c in rgb), outline=(60, 60, 60))
        draw.text((w + 20, y), name, fill=(0, 0, 0), font=font)
    if colorbar:
        y0, x0, x1 = th + h + 4, 24, w - 24
        ramp = heat_colors(np.linspace(0, 1, max(2, x1 - x0)))
        canvas.paste(Image.fromarray(np.repeat(ramp[None], 10, 0)), (x0, y0))
        draw.text((4, y0 - 1), "0", fill=(0, 0, 0), font=font)
        draw.text((x1 + 4, y0 - 1), "1", fill=(0, 0, 0), font=font)
        draw.text((x0, y0 + 12), colorbar, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def save_png(path: str | os.PathLike[str], arr: np.ndarray) -> None:
    """Write an ``(H, W, 3) uint8`` image as a PNG atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def render_png(path: str | os.PathLike[str], coords: torch.Tensor, colors: np.ndarray, cam_to_world: np.ndarray,
               K: np.ndarray, size: tuple[int, int] = (320, 240), background: int = 255, *, title: str | None = None,
               legend: Legend | None = None, colorbar: str | None = None) -> None:
    """Render ``(N, 3) uint8`` point colours from a camera and write a PNG atomically, annotated
    (:func:`annotate`) when a title, legend or colour bar is given."""
    arr = render_view(coords, colors, cam_to_world, K, size, background)
    if title or legend or colorbar:
        arr = annotate(arr, title, legend, colorbar)
    save_png(path, arr)


def write_panel(path: str | os.PathLike[str], tiles: Sequence[tuple[str, np.ndarray]], title: str,
                legend: Legend | None = None) -> None:
    """Side by side: each ``(name, (H, W, 3) uint8 image)`` under its name, one ``title`` above all and
    one legend to the right; written atomically as a PNG."""
    if not tiles:
        raise ValueError("a panel needs at least one image")
    h = max(t.shape[0] for _, t in tiles)
    cells = [annotate(np.pad(t, ((0, h - t.shape[0]), (0, 4), (0, 0)), constant_values=255), name) for name, t in tiles]
    row = np.concatenate(cells, axis=1)
    save_png(path, annotate(row, title, legend))


def overview_camera(coords: torch.Tensor, size: tuple[int, int] = (320, 240)) -> tuple[np.ndarray, np.ndarray]:
    """``(cam_to_world (4, 4), K (3, 3))`` of a camera above a corner of the scan looking at its centre,
    far enough back that the whole bounding box fits the ``size`` image."""
    lo, hi = coords.min(0).values.double().numpy(), coords.max(0).values.double().numpy()
    centre, extent = (lo + hi) / 2, float(np.linalg.norm(hi - lo))
    f = 0.9 * min(size)
    direction = np.array([0.55, -0.65, 0.75]) / np.linalg.norm([0.55, -0.65, 0.75])
    eye = centre + direction * (0.42 * extent * f / (0.5 * min(size)))
    K = np.array([[f, 0.0, (size[0] - 1) / 2], [0.0, f, (size[1] - 1) / 2], [0.0, 0.0, 1.0]])
    return look_at(eye, centre), K


def label_panel(path: str | os.PathLike[str], scene: Scene, labels: np.ndarray, class_names: list[str],
                method: str) -> None:
    """The panel of a segmentation from :func:`overview_camera`: colour | ground truth (when the scene is
    labelled) | ``labels (N,)`` (indices into ``class_names``, -1 grey), with the result's legend."""
    pose, K = overview_camera(scene.coords)
    tiles = [("colour", render_view(scene.coords, (scene.colors.numpy() * 255).round().astype(np.uint8), pose, K))]
    if scene.labels is not None and scene.label_set is not None:
        gt = label_colors(scene.labels, scene.label_set.num_classes)
        tiles.append((f"ground truth ({scene.label_set.name} colours)", render_view(scene.coords, gt, pose, K)))
    tiles.append((method, render_view(scene.coords, label_colors(labels, len(class_names)), pose, K)))
    write_panel(path, tiles, f"{scene.name}: {method}, {len(class_names)} classes", label_legend(labels, class_names))
