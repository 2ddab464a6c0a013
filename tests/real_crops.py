"""Small crops of the real scans in ../shared/data, rebuilt where a test needs them (the data's terms
forbid copying any of it into the repo, so fixtures hold indices and digests, never points)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch


def column_crop(scan: Path, size: float) -> dict[str, np.ndarray]:
    """A ``size`` x ``size`` m column around the median xy of a scannet50k ``*_vert.npy``, with PCA normals
    (16 neighbours, pointing up): ``coord (N, 3) float32`` metres, ``color (N, 3) float32`` 0..255, ``normal``."""
    v = np.load(scan).astype(np.float32)
    xyz, rgb = v[:, :3], v[:, 3:6]
    centre = np.median(xyz[:, :2], axis=0)
    keep = np.all(np.abs(xyz[:, :2] - centre) < size / 2, axis=1)
    xyz, rgb = xyz[keep], rgb[keep]
    p = torch.from_numpy(xyz).double()
    nn_idx = torch.cdist(p, p).topk(16, largest=False).indices
    nb = p[nn_idx] - p[nn_idx].mean(1, keepdim=True)
    normal = torch.linalg.eigh(nb.transpose(1, 2) @ nb).eigenvectors[:, :, 0]
    normal = normal * torch.where(normal[:, 2:3] < 0, -1.0, 1.0)
    return dict(coord=xyz, color=rgb, normal=normal.float().numpy())


def crop_digest(crop: dict[str, np.ndarray]) -> str:
    """sha256 of a crop's coordinates and colours: the fixture's check that the test rebuilt the same points."""
    return hashlib.sha256(np.ascontiguousarray(crop["coord"]).tobytes()
                          + np.ascontiguousarray(crop["color"]).tobytes()).hexdigest()
