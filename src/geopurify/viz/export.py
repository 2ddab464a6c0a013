"""Results written for other tools: coloured label point clouds."""

from __future__ import annotations

import os

import numpy as np

from ..io.ply import write_ply
from .colors import heat_colors, label_colors


def write_label_ply(path: str | os.PathLike[str], xyz: np.ndarray, labels: np.ndarray,
                    num_classes: int, ignore_index: int = -1) -> None:
    """Write per-point predictions: a ``label`` property and a palette colour per class.

    Points labelled ``ignore_index`` are grey. Read back with :func:`read_ply`
    (``properties["label"]``).
    """
    labels = np.asarray(labels).astype(np.int64)
    if labels.shape != (len(xyz),):
        raise ValueError(f"labels have shape {labels.shape}, expected ({len(xyz)},)")
    bad = (labels >= num_classes) | ((labels < 0) & (labels != ignore_index))
    if bad.any():
        raise ValueError(f"{int(bad.sum())} labels are outside 0..{num_classes - 1} and not {ignore_index}")
    colors = label_colors(np.where(labels == ignore_index, -1, labels), num_classes)
    write_ply(path, xyz, rgb=colors.astype(np.uint8), scalars={"label": labels.astype(np.int32)})


def write_heat_ply(path: str | os.PathLike[str], xyz: np.ndarray, values: np.ndarray) -> None:
    """Write a query heatmap: a ``score`` property (``(N,)`` in [0, 1]) and its heat colour per point."""
    values = np.asarray(values, dtype=np.float32)
    if values.shape != (len(xyz),):
        raise ValueError(f"heat values have shape {values.shape}, expected ({len(xyz)},)")
    write_ply(path, xyz, rgb=heat_colors(values), scalars={"score": values})
