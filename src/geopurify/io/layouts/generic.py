"""Any PLY point cloud or mesh, optionally with a frames folder beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import InputError
from ...geometry import mesh_vertex_normals
from ...labels import LabelSet, get_label_set
from ..frames import Frames
from ..ply import read_ply
from ._common import Scan, build_scene, map_labels_at
from .scannet import SCANNET_FRAME_STEP, read_scannet_export_frames
from .sevenscenes import is_sevenscenes, read_sevenscenes_frames


def read_frames_folder(path: str | Path, *, frame_step: int | None = None) -> Frames:
    """Frames from a ScanNet SensReader export (``color/ depth/ pose/ intrinsic/``) or a 7-Scenes folder.

    ``frame_step`` defaults to 20 for ScanNet exports (as upstream) and 1 for 7-Scenes.
    """
    root = Path(path)
    if (root / "color").is_dir() and (root / "pose").is_dir():
        return read_scannet_export_frames(root, frame_step=frame_step or SCANNET_FRAME_STEP)
    if is_sevenscenes(root):
        return read_sevenscenes_frames(root, frame_step=frame_step or 1)
    if not root.exists():
        raise InputError("frames folder not found", root)
    raise InputError("not a frames folder: expected color/ pose/ intrinsic/ (ScanNet export) or "
                     "frame-*.color/.depth/.pose files (7-Scenes)", root)


def read_ply_scene(path: str | Path, *, label_set: str | LabelSet = "scannet20", label_ids: str = "source",
                   frames: str | Path | None = None, frame_step: int | None = None) -> Scan:
    """Read a PLY point cloud or mesh as a scene.

    Args:
        label_set: label set of a ``label`` vertex property.
        label_ids: ``"source"``: labels are on-disk ids of ``label_set.source`` (NYU40 for
            ScanNet's ``.labels.ply``) and are mapped; ``"index"``: labels are already class indices
            (-1 = ignore).
        frames: optional frames folder (ScanNet export or 7-Scenes layout).
    Normals: from ``nx/ny/nz`` if present, else area-weighted from faces for meshes, else
    estimated (oriented towards the cameras when frames are given).
    """
    path = Path(path)
    ply = read_ply(path)
    ls = get_label_set(label_set)
    labels = None
    if "label" in ply.properties:
        raw = ply.properties["label"]
        if raw.dtype.kind not in "ui":
            raise InputError(f"'label' property must be integer, got {raw.dtype}", path)
        if label_ids == "source":
            labels = map_labels_at(path, raw, ls)
        elif label_ids == "index":
            labels = torch.from_numpy(raw.astype(np.int64))
        else:
            raise ValueError(f"label_ids must be 'source' or 'index', got {label_ids!r}")
    instances = ply.properties.get("instance")
    normals = ply.normals
    if normals is None and ply.faces is not None:
        normals = mesh_vertex_normals(torch.from_numpy(ply.xyz), torch.from_numpy(ply.faces)).numpy()
    frm = None if frames is None else read_frames_folder(frames, frame_step=frame_step)
    viewpoint = None if frm is None or len(frm) == 0 else frm.poses[:, :3, 3].to(torch.float32)
    name = path.name[: -len(".ply")].replace("_vh_clean_2", "")
    scene, est = build_scene(path, name, ply.xyz, ply.rgb, normals, labels, ls,
                             None if instances is None else instances.astype(np.int64), viewpoint=viewpoint)
    return Scan(scene, frm, "ply", path, normals_estimated=est)
