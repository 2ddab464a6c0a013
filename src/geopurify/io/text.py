"""Small whitespace-separated numeric matrices (poses, intrinsics)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError


def read_matrix(path: str | os.PathLike[str], shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Read a whitespace-separated numeric matrix as ``float64``.

    ``inf``/``nan`` tokens are parsed (callers decide whether they are acceptable).

    Raises:
        InputError: missing file, non-numeric text, or a shape other than ``shape``.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", path) from None
    try:
        rows = [[float(tok) for tok in line.split()] for line in text.splitlines() if line.strip()]
    except ValueError as exc:
        raise InputError(f"not a numeric matrix ({exc})", path) from None
    if not rows or len({len(r) for r in rows}) != 1:
        raise InputError("not a rectangular numeric matrix", path)
    mat = np.array(rows, dtype=np.float64)
    if shape is not None and mat.shape != shape and not (mat.size == np.prod(shape)):
        raise InputError(f"expected a {'x'.join(map(str, shape))} matrix, got {'x'.join(map(str, mat.shape))}",
                         path)
    return mat.reshape(shape) if shape is not None else mat
