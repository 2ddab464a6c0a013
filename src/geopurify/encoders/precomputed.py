"""Per-frame feature maps computed elsewhere (LSeg, OpenSeg, X-Decoder pixel features, ...).

One file per frame in a folder, named after the frame: ``<frame>.npy`` or ``<frame>.pt`` holding a
``(h, w, D)`` array (channel-last; ``(D, h, w)`` is accepted with ``channels_first=True``) covering
the colour image's field of view at any resolution.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .._fileio import find_in_folder
from .._validate import all_finite
from ..errors import InputError
from ..features import DenseFeatures
from ..frames import Frame


class PrecomputedEncoder:
    """Reads ``<folder>/<frame name>.npy|.pt`` for each frame.

    Args:
        folder: the feature folder.
        channels_first: files hold ``(D, h, w)`` instead of ``(h, w, D)``.
        logit_scale: scale for consensus fusion (LSeg/CLIP: 100; GeoPurify's LSeg path: 14.29).
    """

    name = "precomputed"

    def __init__(self, folder: str | os.PathLike[str], channels_first: bool = False, logit_scale: float = 100.0) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputError("feature folder not found", self.folder)
        self.channels_first = channels_first
        self.logit_scale = logit_scale
        self.dim: int | None = None

    def path_for(self, frame_name: str) -> Path:
        return find_in_folder(self.folder, frame_name, (".npy", ".pt"), f"feature file for frame {frame_name!r}")

    def encode_frame(self, frame: Frame) -> DenseFeatures:
        path = self.path_for(frame.name)
        try:
            if path.suffix == ".npy":
                arr = torch.from_numpy(np.load(path, allow_pickle=False))
            else:
                arr = torch.load(path, map_location="cpu", weights_only=True)
        except (ValueError, OSError, RuntimeError) as exc:
            raise InputError(f"not a readable feature map ({exc})", path) from None
        if not isinstance(arr, torch.Tensor) or arr.dim() != 3 or not arr.dtype.is_floating_point:
            raise InputError(f"expected a float (h, w, D) feature map, got {getattr(arr, 'shape', type(arr))}", path)
        if self.channels_first:
            arr = arr.permute(1, 2, 0)
        if self.dim is not None and arr.shape[2] != self.dim:
            raise InputError(f"has {arr.shape[2]}-d features, other frames have {self.dim}", path)
        self.dim = int(arr.shape[2])
        if not all_finite(arr):
            raise InputError("feature map contains NaN or inf", path)
        return DenseFeatures(arr)
