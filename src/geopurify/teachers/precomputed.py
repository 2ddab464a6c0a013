"""The ``precomputed`` teacher: per-point features from files, one per scene.

``<folder>/<scene name>.npy`` holds an ``(N, D)`` float array, or ``<scene name>.npz`` holds it under
the key ``features`` (for example Sonata features computed with its official code on a GPU machine,
unpooled to the original points). Rows are matched to the scene's points by index.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from .._fileio import find_in_folder
from ..errors import InputError
from ..io.arrays import load_npy
from ..io.scene import Scene


class PrecomputedTeacher:
    name = "precomputed"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.root = Path(path)
        if not self.root.is_dir():
            raise InputError("teacher feature folder not found", self.root)
        self.settings = {"path": str(self.root.resolve())}

    def file_for(self, scene: Scene) -> Path:
        return find_in_folder(self.root, scene.name, (".npy", ".npz"), f"teacher features for scene {scene.name!r}")

    def __call__(self, scene: Scene) -> torch.Tensor:
        path = self.file_for(scene)
        if path.suffix == ".npy":
            arr = load_npy(path)
        else:
            try:
                with np.load(path, allow_pickle=False) as z:
                    arr = z["features"]
            except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                raise InputError(f"cannot read teacher features ({type(exc).__name__}: {exc})", path) from None
        if arr.ndim != 2 or arr.shape[0] != scene.num_points:
            raise InputError(f"teacher features have shape {arr.shape}, expected ({scene.num_points}, D) "
                             f"for scene {scene.name!r}", path)
        if not np.issubdtype(arr.dtype, np.floating) or not np.isfinite(arr).all():
            raise InputError("teacher features must be finite floats", path)
        return torch.from_numpy(arr.astype(np.float32))
