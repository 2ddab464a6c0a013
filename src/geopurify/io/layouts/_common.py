"""Helpers shared by the scan readers."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..._validate import all_finite
from ...errors import InputError
from ...geometry import estimate_normals
from ...labels import LabelSet
from ..frames import Frames
from ..scene import Scene

log = logging.getLogger("geopurify.io")


@dataclass(frozen=True, eq=False)
class Scan:
    """A scene plus (optionally) its posed frames, as read from disk.

    Attributes:
        scene: the point cloud.
        frames: posed colour(-depth) frames, lazily loaded; ``None`` when the layout has none.
        layout: the reader that produced it (a key of :data:`geopurify.io.LAYOUTS`).
        path: what was read.
        normals_estimated: True when the source had no normals and they were estimated.
        source_index: ``(N,) int64`` index of each point among the source file's vertices when the reader
            dropped some (Gaussian splats: low-opacity Gaussians), else None.
    """

    scene: Scene
    frames: Frames | None
    layout: str
    path: Path
    normals_estimated: bool = False
    source_index: np.ndarray | None = None


def map_labels_at(path: Path, ids: np.ndarray, label_set: LabelSet) -> torch.Tensor:
    """:func:`~geopurify.labels.map_source_ids`, with errors naming ``path``. Float ids are accepted only
    when every one is a whole number (with a warning); other non-integer ids are an error."""
    ids = np.asarray(ids)
    if ids.dtype.kind == "f":
        if not np.isfinite(ids).all() or not (ids == np.round(ids)).all():
            raise InputError(f"label ids are {ids.dtype} values that are not whole numbers", path)
        log.warning("%s: label ids are stored as %s; read as integers", path, ids.dtype)
    elif ids.dtype.kind not in "biu":
        raise InputError(f"label ids are {ids.dtype} values, expected integers", path)
    try:
        return label_set.map_source_ids(ids.astype(np.int64))
    except InputError as exc:
        raise exc.at(path) from None


def build_scene(path: str | os.PathLike[str], name: str, xyz: np.ndarray, rgb01: np.ndarray | None,
                normals: np.ndarray | None, labels: torch.Tensor | np.ndarray | None = None,
                label_set: LabelSet | None = None, instances: np.ndarray | None = None,
                viewpoint: torch.Tensor | None = None, normal_k: int = 16) -> tuple[Scene, bool]:
    """Validate arrays into a :class:`Scene`, estimating normals when ``normals`` is None.

    Returns the scene and whether normals were estimated. Any validation problem is re-raised as an
    :class:`InputError` naming ``path``.
    """
    try:
        xyz_t = torch.from_numpy(np.ascontiguousarray(xyz, dtype=np.float32))
        if not all_finite(xyz_t):
            raise InputError(f"{int((~torch.isfinite(xyz_t)).any(1).sum())} points have NaN or inf coordinates")
        if xyz_t.shape[0] == 0:
            raise InputError("scene has no points")
        rgb = (torch.full_like(xyz_t, 0.5) if rgb01 is None
               else torch.from_numpy(np.ascontiguousarray(rgb01, dtype=np.float32)))
        estimated = normals is None
        if estimated:
            if xyz_t.shape[0] < 3:
                raise InputError("need at least 3 points to estimate normals")
            nrm = estimate_normals(xyz_t, k=normal_k, viewpoint=viewpoint)
        else:
            nrm = torch.from_numpy(np.ascontiguousarray(normals, dtype=np.float32))
            length = nrm.norm(dim=1, keepdim=True)
            # sources store unnormalised or zero normals; renormalise, fall back to +z where degenerate
            ok = length > 1e-6                                # False for NaN too
            if not bool(ok.all()):
                log.warning("%s: %d normals are zero, NaN or inf; they were set to +z", path, int((~ok).sum()))
            nrm = torch.where(ok, nrm / length.clamp_min(1e-6), torch.tensor([0.0, 0.0, 1.0]))
        lab = None if labels is None else torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor)
                                                          else labels).to(torch.int64)
        inst = None if instances is None else torch.from_numpy(np.asarray(instances).astype(np.int64))
        scene = Scene(name=name, coords=xyz_t, colors=rgb, normals=nrm, labels=lab,
                      label_set=label_set if lab is not None else None, instances=inst)
    except InputError as exc:
        raise exc.at(path) from None
    return scene, estimated


def numeric_stem(path: Path) -> tuple[int, str]:
    """Sort key: the first integer in the file name, then the name."""
    digits = "".join(ch if ch.isdigit() else " " for ch in path.name).split()
    return (int(digits[0]) if digits else -1, path.name)
