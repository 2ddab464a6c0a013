"""Per-frame feature maps computed elsewhere (LSeg, OpenSeg, X-Decoder pixel features, ...).

One file per frame, named after the frame: ``<folder>/<frame>.npy`` or ``<folder>/<frame>.pt`` (or any
pattern with ``{frame}``, e.g. ``feats/{frame}_lseg.npy``) holding a ``(h, w, D)`` array (channel-last;
``(D, h, w)`` is accepted with ``channels_first=True``) covering
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
from ..io.frames import Frame
from .base import TextEncoder
from .maps import DenseFeatures


class PrecomputedEncoder:
    """Reads one feature map per frame from ``source``.

    Args:
        source: the feature folder (``<frame>.npy`` or ``<frame>.pt``), or a path pattern with ``{frame}``.
        channels_first: files hold ``(D, h, w)`` instead of ``(h, w, D)``.
        logit_scale: scale for consensus fusion (LSeg/CLIP: 100; GeoPurify's LSeg path: 14.29).
        text_encoder: the text encoder whose space the maps share (the 2D model's own text tower),
            used to embed vocabularies; None: give one when lifting with consensus fusion.
    """

    name = "precomputed"

    def __init__(self, source: str | os.PathLike[str], channels_first: bool = False, logit_scale: float = 100.0,
                 text_encoder: TextEncoder | None = None) -> None:
        self.source = str(source)
        self.pattern = self.source if "{frame}" in self.source else None
        folder = Path(self.pattern).parent if self.pattern else Path(source)
        if not folder.is_dir():
            raise InputError("feature folder not found", folder)
        self.folder = folder
        self.channels_first = channels_first
        self.logit_scale = logit_scale
        self.text_encoder = text_encoder
        self.dim: int | None = None

    def path_for(self, frame_name: str) -> Path:
        if self.pattern is not None:
            path = Path(self.pattern.format(frame=frame_name))
            if not path.is_file():
                raise InputError(f"no feature file for frame {frame_name!r}", path)
            return path
        return find_in_folder(self.folder, frame_name, (".npy", ".pt"), f"feature file for frame {frame_name!r}")

    def encode_frame(self, frame: Frame) -> DenseFeatures:
        path = self.path_for(frame.name)
        try:
            if path.suffix == ".npy":
                arr = torch.from_numpy(np.load(path, allow_pickle=False))
            else:
                arr = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure to read (pickle refused, truncated, ...) is a bad file
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
