"""Scan readers: one function per on-disk layout, and :func:`load_scan` that detects the layout.

=========================  ===================================================================
layout                     what ``path`` points at
=========================  ===================================================================
``scannet50k``             ``<dir>/<scene>`` or ``<dir>/<scene>_vert.npy`` (+ sem/ins labels)
``scannet-frames-json``    a folder with ``vert.npy``, ``frames.json`` and ``frames/*.jpg``
``scannet``                a ScanNet v2 scene folder (``_vh_clean_2.ply`` [+ SensReader export])
``7scenes``                a 7-Scenes sequence folder (``frame-*.color/.depth/.pose``)
``pointcept``              a Pointcept scene folder (``coord.npy``, ``color.npy``, ...)
``pth``                    an OpenScene/GeoPurify ``.pth`` tuple
``ply``                    any ``.ply`` point cloud or mesh (optionally ``frames=<folder>``)
``nerfstudio``             a ``transforms.json`` or the folder holding it (Polycam, Record3D, KIRI, ...)
``strayscanner``           a Stray Scanner export (``odometry.csv``, ``camera_matrix.csv``, ``depth/``, ``rgb/``)
``arkitscenes``            an ARKitScenes scene (``lowres_wide/``, ``lowres_depth/``, ``lowres_wide.traj``)
``replica``                a NICE-SLAM Replica scene (``results/``, ``traj.txt``)
``record3d``               a Record3D ``.r3d`` file (extra ``capture``)
``record3d-exr``           a Record3D "EXR + JPG" export folder (``metadata.json``, ``rgb/``, ``depth/``; extra ``capture``)
``matterport``             a Matterport3D ``<house>/region_segmentations/<region>.ply`` (+ undistorted frames)
``splat``                  a 3D Gaussian-splat ``.ply`` (``f_dc_*``, ``opacity``, ``scale_*``, ``rot_*``)
=========================  ===================================================================
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..._plugins import check_options
from ...errors import InputError, UnknownNameError
from ._capture import fuse_depth_frames
from ._common import Scan
from .arkitscenes import is_arkitscenes, read_arkitscenes, read_arkitscenes_frames
from .generic import read_frames_folder, read_ply_scene
from .matterport import is_matterport_region, read_matterport, read_matterport_frames
from .nerfstudio import nerfstudio_json, read_nerfstudio, read_nerfstudio_frames
from .preprocessed import is_pointcept, read_pointcept, read_pth
from .record3d import (
    is_record3d_export,
    read_record3d,
    read_record3d_export,
    read_record3d_export_frames,
    read_record3d_frames,
)
from .replica import is_replica, read_replica, read_replica_frames
from .scannet import (
    list_scannet50k,
    read_scannet50k,
    read_scannet_export_frames,
    read_scannet_frames_json,
    read_scannet_release,
    scannet50k_paths,
)
from .sevenscenes import is_sevenscenes, read_sevenscenes, read_sevenscenes_frames
from .splat import is_gaussian_splat, read_splat, write_splat_labels
from .strayscanner import is_strayscanner, read_strayscanner, read_strayscanner_frames

LAYOUTS: dict[str, Callable[..., Scan]] = {
    "scannet50k": read_scannet50k,
    "scannet-frames-json": read_scannet_frames_json,
    "scannet": read_scannet_release,
    "7scenes": read_sevenscenes,
    "pointcept": read_pointcept,
    "pth": read_pth,
    "ply": read_ply_scene,
    "nerfstudio": read_nerfstudio,
    "strayscanner": read_strayscanner,
    "arkitscenes": read_arkitscenes,
    "replica": read_replica,
    "record3d": read_record3d,
    "record3d-exr": read_record3d_export,
    "splat": read_splat,
    "matterport": read_matterport,
}


def detect_layout(path: str | os.PathLike[str]) -> str:
    """Name of the layout at ``path`` (a key of :data:`LAYOUTS`).

    Raises:
        InputError: nothing recognisable is there.
    """
    p = Path(path)
    if scannet50k_paths(p) is not None:
        return "scannet50k"
    if p.is_dir():
        if (p / "frames.json").is_file() and (p / "vert.npy").is_file():
            return "scannet-frames-json"
        if any(p.glob("*_vh_clean_2.ply")):
            return "scannet"
        if is_pointcept(p):
            return "pointcept"
        if is_sevenscenes(p):
            return "7scenes"
        if nerfstudio_json(p) is not None:
            return "nerfstudio"
        if is_strayscanner(p):
            return "strayscanner"
        if is_record3d_export(p):
            return "record3d-exr"
        if is_arkitscenes(p):
            return "arkitscenes"
        if is_replica(p):
            return "replica"
        raise InputError("folder is not a known scan layout (" + ", ".join(LAYOUTS) + ")", p)
    if p.is_file():
        if p.suffix == ".pth":
            return "pth"
        if is_matterport_region(p):
            return "matterport"
        if p.suffix.lower() == ".ply":
            return "splat" if is_gaussian_splat(p) else "ply"
        if p.suffix.lower() == ".json":
            return "nerfstudio"
        if p.suffix.lower() == ".r3d":
            return "record3d"
        raise InputError(f"unknown scan file type {p.suffix!r}: expected .ply, .pth, .r3d, transforms.json or "
                         "<scene>_vert.npy", p)
    raise InputError("no such file or folder", p)


def load_scan(path: str | os.PathLike[str], *, layout: str | None = None, **options: Any) -> Scan:
    """Read a scan from any supported layout.

    Args:
        path: file or folder (see the table above).
        layout: force a layout instead of detecting it.
        **options: passed to the layout's reader (e.g. ``label_set``, ``frame_step``, ``frames``).
    Raises:
        InputError: naming the file that is missing, unreadable or invalid.
        UnknownNameError: an unknown layout.
    """
    name = layout or detect_layout(path)
    if name not in LAYOUTS:
        raise UnknownNameError(f"unknown layout {name!r}; available: {', '.join(LAYOUTS)}")
    check_options(LAYOUTS[name], options, f"the {name} layout", positional=1, path=path)
    return LAYOUTS[name](path, **options)


__all__ = [
    "LAYOUTS", "Scan", "detect_layout", "load_scan", "list_scannet50k", "read_scannet50k",
    "read_scannet_frames_json", "read_scannet_release", "read_scannet_export_frames", "read_sevenscenes",
    "read_sevenscenes_frames", "fuse_depth_frames", "read_pointcept", "read_pth", "read_ply_scene",
    "read_frames_folder", "read_nerfstudio", "read_nerfstudio_frames", "read_strayscanner", "read_strayscanner_frames",
    "read_arkitscenes", "read_arkitscenes_frames", "read_replica", "read_replica_frames", "read_record3d",
    "read_record3d_frames", "read_record3d_export", "read_record3d_export_frames",
    "read_matterport", "read_matterport_frames", "read_splat", "write_splat_labels",
    "is_gaussian_splat",
]
