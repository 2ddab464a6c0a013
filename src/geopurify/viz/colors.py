"""Colours for people: a fixed palette per class, grey for ignored points, and a heat colour map."""

from __future__ import annotations

import numpy as np
import torch


def palette(num_classes: int) -> np.ndarray:
    """A fixed, distinct colour per class: ``(num_classes, 3) uint8``; ignored points use grey."""
    # Golden-ratio hue walk in HSV, two alternating brightness levels: deterministic and distinct.
    h = (np.arange(num_classes) * 0.618033988749895) % 1.0
    s = np.where(np.arange(num_classes) % 2 == 0, 0.75, 0.55)
    v = np.where(np.arange(num_classes) % 3 == 0, 0.95, 0.80)
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = np.select([i[:, None] == k for k in range(6)],
                    [np.stack(c, 1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return np.round(rgb * 255).astype(np.uint8)


IGNORE_COLOR = np.array([128, 128, 128], dtype=np.uint8)


def label_colors(labels: torch.Tensor | np.ndarray, num_classes: int) -> np.ndarray:
    """``(N, 3) uint8`` palette colour per label (-1: grey)."""
    lab = np.asarray(labels).astype(np.int64)
    pal = np.concatenate([palette(num_classes), np.array([IGNORE_COLOR], dtype=np.uint8)])
    return pal[np.where(lab >= 0, lab, num_classes)]


def heat_colors(values: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(N, 3) uint8`` dark-blue -> yellow colour map of values in [0, 1]."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0, 1)[:, None]
    lo, mid, hi = np.array([30, 20, 90.0]), np.array([200, 40, 120.0]), np.array([255, 230, 60.0])
    return np.where(v < 0.5, lo + (mid - lo) * v * 2, mid + (hi - mid) * (v - 0.5) * 2).round().astype(np.uint8)


def label_legend(labels: torch.Tensor | np.ndarray,
                 class_names: list[str] | tuple[str, ...]) -> list[tuple[str, tuple[int, int, int]]]:
    """(name, colour) of each class that occurs in ``labels`` (indices into ``class_names``; -1 skipped),
    in class order, with the colours of :func:`label_colors`."""
    lab = np.asarray(labels).astype(np.int64)
    pal = palette(len(class_names))
    return [(class_names[c], tuple(int(v) for v in pal[c])) for c in np.unique(lab[lab >= 0]).tolist()]
