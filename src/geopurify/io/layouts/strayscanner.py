"""Stray Scanner (iPhone/iPad LiDAR app) exports.

Files: ``camera_matrix.csv`` (3x3 intrinsics of the RGB video, 1920x1440), ``odometry.csv`` (header
``timestamp, frame, x, y, z, qx, qy, qz, qw``; older exports: ``x, y, z, qx, qy, qz, qw`` without a header),
``depth/NNNNNN.npy`` or ``.png`` (uint16 millimetres, 256x192), ``confidence/`` (not used), and the colour
frames extracted from ``rgb.mp4`` as ``rgb/NNNNNN.jpg|png`` (``ffmpeg -i rgb.mp4 -start_number 0
rgb/%06d.jpg``). Source convention (the app's ``OdometryEncoder.swift`` writes ``q_WA * q_AC`` with
``q_AC`` a half turn about x, and its ``stray_visualize.py`` uses the pose as is with an OpenCV pinhole):
camera-to-world, ARKit world axes (y up), camera already in OpenCV axes, so no flip here. The
intrinsics refer to the video's resolution and are scaled to the frames' size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...camera import check_intrinsics, pose_matrix, quaternion_to_matrix
from ...errors import InputError
from ..frames import Frames, FrameSpec
from ._capture import CLOUD_FRAME_STEP, capture_scan, valid_poses
from ._common import Scan

STRAY_VIDEO_SIZE = (1920, 1440)
STRAY_DEPTH_SCALE = 1000.0


def is_strayscanner(root: Path) -> bool:
    return root.is_dir() and (root / "odometry.csv").is_file() and (root / "camera_matrix.csv").is_file()


def _csv(path: Path, skip_header: bool) -> np.ndarray:
    try:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", path) from None
    if skip_header and lines and not lines[0].lstrip()[:1].lstrip("-").replace(".", "").isdigit():
        lines = lines[1:]
    try:
        rows = [[float(tok) for tok in ln.split(",")] for ln in lines]
    except ValueError as exc:
        raise InputError(f"not a numeric CSV ({exc})", path) from None
    if not rows or len({len(r) for r in rows}) != 1:
        raise InputError("not a rectangular numeric CSV", path)
    return np.array(rows)


def _frame_file(folder: Path, index: int, exts: tuple[str, ...]) -> Path | None:
    return next((folder / f"{index:06d}{e}" for e in exts if (folder / f"{index:06d}{e}").is_file()), None)


def read_strayscanner_frames(path: str | Path, *, frame_step: int = 1) -> Frames:
    """Frames of a Stray Scanner export (every ``frame_step``-th odometry row)."""
    root = Path(path)
    K_path, odo_path = root / "camera_matrix.csv", root / "odometry.csv"
    try:
        K = check_intrinsics(_csv(K_path, skip_header=False))
    except InputError as exc:
        raise exc.at(K_path) from None
    odo = _csv(odo_path, skip_header=True)
    if odo.shape[1] not in (7, 9):
        raise InputError(f"expected 9 columns (timestamp, frame, x, y, z, qx, qy, qz, qw), got {odo.shape[1]}",
                         odo_path)
    index = odo[:, 1].astype(np.int64) if odo.shape[1] == 9 else np.arange(len(odo))
    xyz, quat = odo[:, -7:-4], odo[:, -4:]
    with np.errstate(invalid="ignore", divide="ignore"):
        poses = pose_matrix(quaternion_to_matrix(quat), xyz)
    poses[~np.isfinite(odo).all(1)] = np.nan
    if not (root / "rgb").is_dir():
        hint = " (extract rgb.mp4: ffmpeg -i rgb.mp4 -start_number 0 rgb/%06d.jpg)" if (root / "rgb.mp4").is_file() else ""
        raise InputError(f"no rgb/ folder of colour frames{hint}", root)
    specs = []
    for i in valid_poses(list(poses), [f"frame {j}" for j in index], odo_path)[::frame_step]:
        color = _frame_file(root / "rgb", int(index[i]), (".jpg", ".png"))
        depth = _frame_file(root / "depth", int(index[i]), (".npy", ".png"))
        if color is None:
            raise InputError(f"frame {index[i]} is listed in odometry.csv but rgb/{index[i]:06d}.jpg/.png is missing",
                             root / "rgb")
        if depth is None:
            raise InputError(f"frame {index[i]} is listed in odometry.csv but depth/{index[i]:06d}.npy/.png is missing",
                             root / "depth")
        specs.append(FrameSpec(name=f"{index[i]:06d}", color_path=color, intrinsics=K, cam_to_world=poses[i],
                               depth_path=depth, depth_scale=STRAY_DEPTH_SCALE, intrinsics_size=STRAY_VIDEO_SIZE))
    return Frames.from_specs(specs)


def read_strayscanner(path: str | Path, *, frame_step: int = 1, cloud_frame_step: int = CLOUD_FRAME_STEP,
                      voxel_size: float = 0.02) -> Scan:
    """Read a Stray Scanner export: its frames and a cloud fused from their depth."""
    root = Path(path)
    return capture_scan(root, root.name, "strayscanner", read_strayscanner_frames(root), frame_step=frame_step,
                        cloud_frame_step=cloud_frame_step, voxel_size=voxel_size)
