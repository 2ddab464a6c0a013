"""3D Gaussian splats: the ``.ply`` that graphdeco-inria/gaussian-splatting (``scene/gaussian_model.py``
``save_ply``) and the tools following it write: per Gaussian ``x y z``, ``f_dc_0..2`` (degree-0 spherical
harmonics), ``f_rest_*``, ``opacity`` (a logit), ``scale_0..2`` (logs) and ``rot_0..3`` (a quaternion
``w x y z``).

The scene's points are the Gaussian centres; colour is the DC term as the renderer's ``SH2RGB``:
``0.5 + 0.28209479 * f_dc``, clipped to [0, 1]; the normal is the Gaussian's shortest axis (flat Gaussians
lie on the surface). Gaussians with ``sigmoid(opacity) < min_opacity`` (default :data:`MIN_OPACITY`) are
floaters and dropped; :attr:`Scan.source_index` keeps which Gaussians the points are, so that
:func:`write_splat_labels` can write labels back into a copy of the splat file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement

from ..._fileio import atomic_path
from ...camera import quaternion_to_matrix
from ...errors import InputError
from ..ply import read_ply
from ._common import Scan, build_scene

SH_C0 = 0.28209479177387814
MIN_OPACITY = 0.1
SPLAT_PROPERTIES = ("f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                    "rot_0", "rot_1", "rot_2", "rot_3")


def is_gaussian_splat(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a PLY whose header declares the Gaussian-splat vertex properties (reads the header only)."""
    p = Path(path)
    if p.suffix.lower() != ".ply" or not p.is_file():
        return False
    with open(p, "rb") as fh:
        head = fh.read(65536)
    header = head.split(b"end_header", 1)[0].decode("ascii", "replace").split()
    return all(name in header for name in SPLAT_PROPERTIES)


def read_splat(path: str | Path, *, min_opacity: float = MIN_OPACITY) -> Scan:
    """Read a Gaussian-splat PLY as a point cloud of its (opaque enough) Gaussian centres.

    Args:
        min_opacity: drop Gaussians whose opacity ``sigmoid(logit)`` is below this (0 keeps all).
    """
    path = Path(path)
    ply = read_ply(path)
    p = ply.properties
    missing = [k for k in SPLAT_PROPERTIES if k not in p]
    if missing:
        raise InputError(f"not a Gaussian-splat PLY: no {', '.join(missing)}", path)
    with np.errstate(over="ignore"):
        opacity = 1.0 / (1.0 + np.exp(-p["opacity"].astype(np.float64)))
    keep = np.flatnonzero(opacity >= min_opacity)
    if keep.size < 3:
        raise InputError(f"only {keep.size} of {len(opacity)} Gaussians have opacity >= {min_opacity:g}", path)
    rgb = np.clip(0.5 + SH_C0 * np.stack([p[f"f_dc_{i}"] for i in range(3)], 1)[keep], 0.0, 1.0)
    quat_wxyz = np.stack([p[f"rot_{i}"] for i in range(4)], 1)[keep].astype(np.float64)
    scales = np.stack([p[f"scale_{i}"] for i in range(3)], 1)[keep]
    if not (np.isfinite(quat_wxyz).all() and (np.linalg.norm(quat_wxyz, axis=1) > 0).all() and np.isfinite(scales).all()):
        raise InputError("Gaussians with NaN, inf or zero rotations or scales", path)
    R = quaternion_to_matrix(quat_wxyz[:, [1, 2, 3, 0]])
    normals = R[np.arange(len(keep)), :, np.argmin(scales, 1)]          # column of the shortest axis
    scene, est = build_scene(path, path.stem, ply.xyz[keep], rgb, normals)
    return Scan(scene, None, "splat", path, normals_estimated=est, source_index=keep)


def write_splat_labels(source: str | Path, out: str | Path, labels: np.ndarray, source_index: np.ndarray,
                       colors: np.ndarray) -> None:
    """Write a copy of the splat file ``source`` with a per-Gaussian ``label`` (int32, -1 for dropped Gaussians)
    and its colour set to the label's (``f_dc`` from ``colors``, ``f_rest`` zeroed: view-independent), so
    that splat viewers show the segmentation.

    Args:
        labels: ``(N,)`` label of each scene point; ``source_index``: ``(N,)`` its Gaussian.
        colors: ``(N, 3) uint8`` colour of each scene point's label.
    """
    ply = PlyData.read(str(source))
    vert = ply["vertex"].data
    full = np.full(len(vert), -1, np.int32)
    full[source_index] = labels
    rgb = np.full((len(vert), 3), 0.5)
    rgb[source_index] = np.asarray(colors, np.float64) / 255.0
    names = [n for n in vert.dtype.names if n != "label"]
    data = np.empty(len(vert), dtype=[(n, vert.dtype[n]) for n in names] + [("label", "i4")])
    for n in names:
        data[n] = vert[n]
        if n.startswith("f_rest_"):
            data[n] = 0
    for i in range(3):
        data[f"f_dc_{i}"] = (rgb[:, i] - 0.5) / SH_C0
    data["label"] = full
    others = [e for e in ply.elements if e.name != "vertex"]
    with atomic_path(Path(out)) as tmp:
        PlyData([PlyElement.describe(data, "vertex"), *others], text=ply.text).write(str(tmp))
