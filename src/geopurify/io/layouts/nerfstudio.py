"""nerfstudio ``transforms.json``: what ``ns-process-data``, Polycam, Record3D, KIRI and ScanNet++ export.

Source convention (docs.nerf.studio, quickstart/data_conventions.html and the nerfstudio dataparser):
``frames[].transform_matrix`` is a 4x4 camera-to-world in the OpenGL camera convention (x right, y up,
looking down -z), converted here by ``cam_to_world @ OPENGL_TO_OPENCV``. Intrinsics ``fl_x fl_y cx cy w h``
are global or per frame (per frame wins), and are scaled to the image files when those are smaller
(downscaled ``images_2/``, ...). ``camera_model`` ``OPENCV``, ``PINHOLE`` or ``SIMPLE_PINHOLE``
are read when every distortion coefficient (``k1 k2 k3 k4 p1 p2``) is zero; anything else is an error
(undistort first, e.g. with ``ns-process-data``). ``depth_file_path`` (16-bit PNG or ``.npy``) times
``depth_unit_scale_factor`` (default 1e-3, i.e. millimetres) is metres. ``ply_file_path`` is a point
cloud in the original data coordinates; ``applied_transform`` (3x4, original -> saved coordinates) maps it
into the frame of the poses. Without a cloud, one is fused from the depth frames.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from ...camera import OPENGL_TO_OPENCV, check_intrinsics
from ...errors import InputError
from ..frames import Frames, FrameSpec
from ..scene import Scene
from ._capture import CLOUD_FRAME_STEP, capture_scan, existing, read_json, valid_poses
from ._common import Scan
from .generic import read_ply_scene

PINHOLE_MODELS = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE")
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
DEFAULT_DEPTH_UNIT = 1e-3


def nerfstudio_json(path: Path) -> Path | None:
    """The ``transforms.json`` of ``path`` (the file itself or a folder holding it), else None."""
    if path.is_file() and path.suffix.lower() == ".json":
        return path
    return path / "transforms.json" if (path / "transforms.json").is_file() else None


def _intrinsics(meta: dict, frame: dict, where: str, path: Path) -> tuple[np.ndarray, tuple[int, int] | None]:
    def get(key: str, fallback: str | None = None) -> float | None:
        for k in (key, fallback):
            if k is not None and (v := frame.get(k, meta.get(k))) is not None:
                return float(v)
        return None

    model = str(frame.get("camera_model", meta.get("camera_model", "OPENCV")))
    if model not in PINHOLE_MODELS:
        raise InputError(f"{where}: camera_model {model!r} is not supported (pinhole models: "
                         f"{', '.join(PINHOLE_MODELS)}); undistort the images first", path)
    dist = {k: get(k) for k in DISTORTION_KEYS}
    if any(v for v in dist.values()):
        raise InputError(f"{where}: non-zero distortion ({', '.join(f'{k}={v:g}' for k, v in dist.items() if v)}) is "
                         "not supported; undistort the images first", path)
    fx, fy, cx, cy = get("fl_x"), get("fl_y", "fl_x"), get("cx"), get("cy")
    if None in (fx, fy, cx, cy):
        raise InputError(f"{where}: needs fl_x, cx and cy (globally or per frame)", path)
    w, h = get("w"), get("h")
    try:
        K = check_intrinsics(np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]]), f"{where} intrinsics")
    except InputError as exc:
        raise exc.at(path) from None
    return K, (int(w), int(h)) if w and h else None


def read_nerfstudio_frames(path: str | Path, *, frame_step: int = 1) -> Frames:
    """Frames of a ``transforms.json`` (every ``frame_step``-th, in file order), poses in OpenCV axes."""
    tf = nerfstudio_json(Path(path))
    if tf is None:
        raise InputError("no transforms.json here", path)
    meta, root = read_json(tf), tf.parent
    entries = meta.get("frames")
    if not isinstance(entries, list) or not entries:
        raise InputError("has no 'frames' list", tf)
    scale = 1.0 / float(meta.get("depth_unit_scale_factor", DEFAULT_DEPTH_UNIT))
    poses, names = [], []
    for i, fr in enumerate(entries):
        if not isinstance(fr, dict) or "file_path" not in fr:
            raise InputError(f"frames[{i}] has no file_path", tf)
        names.append(str(fr["file_path"]))
        try:
            poses.append(np.asarray(fr.get("transform_matrix"), dtype=np.float64) @ OPENGL_TO_OPENCV)
        except (TypeError, ValueError):
            poses.append(np.full((4, 4), np.nan))            # counted and skipped with the others
    specs = []
    for i in valid_poses(poses, names, tf)[::frame_step]:
        fr = entries[i]
        K, size = _intrinsics(meta, fr, f"frames[{i}] ({fr['file_path']})", tf)
        depth = fr.get("depth_file_path")
        specs.append(FrameSpec(name=Path(str(fr["file_path"])).stem,
                               color_path=existing(root / str(fr["file_path"]), "image", tf),
                               intrinsics=K, cam_to_world=poses[i],
                               depth_path=None if depth is None else existing(root / str(depth), "depth image", tf),
                               depth_scale=scale, intrinsics_size=size))
    return Frames.from_specs(specs)


def read_nerfstudio(path: str | Path, *, frame_step: int = 1, cloud_frame_step: int = CLOUD_FRAME_STEP,
                    voxel_size: float = 0.02) -> Scan:
    """Read a nerfstudio capture: its frames, and its ``ply_file_path`` cloud or one fused from depth."""
    tf = nerfstudio_json(Path(path))
    if tf is None:
        raise InputError("no transforms.json here", path)
    meta = read_json(tf)
    cloud = None
    if meta.get("ply_file_path") is not None:
        cloud = read_ply_scene(existing(tf.parent / str(meta["ply_file_path"]), "point cloud", tf))
        if meta.get("applied_transform") is not None:
            cloud = dataclasses.replace(cloud, scene=_moved(cloud.scene, meta["applied_transform"], tf))
    return capture_scan(tf, tf.parent.name, "nerfstudio", read_nerfstudio_frames(tf), frame_step=frame_step,
                        cloud_frame_step=cloud_frame_step, voxel_size=voxel_size, cloud=cloud)


def _moved(scene: Scene, applied: object, tf: Path) -> Scene:
    """``scene`` moved by an ``applied_transform`` (3x4: original data -> saved coordinates)."""
    try:
        A = np.asarray(applied, dtype=np.float64)
    except (TypeError, ValueError):
        A = np.zeros(0)
    if A.shape not in ((3, 4), (4, 4)) or not np.isfinite(A).all():
        raise InputError(f"applied_transform must be a finite 3x4 matrix, got {applied!r:.60}", tf)
    R, t = torch.from_numpy(A[:3, :3]), torch.from_numpy(A[:3, 3])
    normals = scene.normals.double() @ R.T
    return dataclasses.replace(scene, coords=(scene.coords.double() @ R.T + t).float(),
                               normals=(normals / normals.norm(dim=1, keepdim=True).clamp_min(1e-12)).float())
