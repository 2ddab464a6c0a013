"""ARKitScenes raw scenes (apple/ARKitScenes ``DATA.md``; read as ``threedod/benchmark_scripts/utils/
tenFpsDataLoader.py`` reads them).

Files in ``<video_id>/``: ``lowres_wide/<video_id>_<t>.png`` colour, ``lowres_depth/<video_id>_<t>.png``
(uint16 millimetres), ``lowres_wide_intrinsics/<video_id>_<t>.pincam`` (one line ``w h fx fy cx cy``; the
loader also looks 1 ms either side), ``lowres_wide.traj`` (one line per pose: timestamp, axis-angle
rotation in radians (3), translation in metres (3)), and optionally the mesh ``<video_id>_3dod_mesh.ply``.
Source convention: a ``.traj`` line is world-to-camera with an OpenCV camera; it is inverted to
camera-to-world. Frames are matched to poses by timestamp within :data:`ARKIT_TIME_TOLERANCE` seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...camera import axis_angle_to_matrix, check_intrinsics, pose_matrix
from ...errors import InputError
from ..frames import Frames, FrameSpec
from ..text import read_matrix
from ._capture import CLOUD_FRAME_STEP, capture_scan, valid_poses
from ._common import Scan
from .generic import read_ply_scene

ARKIT_TIME_TOLERANCE = 0.005     # seconds, as tenFpsDataLoader.py
ARKIT_DEPTH_SCALE = 1000.0


def is_arkitscenes(root: Path) -> bool:
    return root.is_dir() and (root / "lowres_wide.traj").is_file() and (root / "lowres_wide").is_dir()


def read_traj(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps ``(P,)`` and camera-to-world poses ``(P, 4, 4)`` of a ``.traj`` file (rows with NaN give NaN poses)."""
    traj = read_matrix(path)
    if traj.shape[1] != 7:
        raise InputError(f"expected 7 columns (timestamp, 3 axis-angle, 3 translation), got {traj.shape[1]}", path)
    with np.errstate(invalid="ignore"):
        world_to_cam = pose_matrix(axis_angle_to_matrix(traj[:, 1:4]), traj[:, 4:7])
        cam_to_world = np.full_like(world_to_cam, np.nan)
        ok = np.isfinite(world_to_cam).all((1, 2))
        cam_to_world[ok] = np.linalg.inv(world_to_cam[ok])
    return traj[:, 0], cam_to_world


def _pincam(folder: Path, video: str, t: float) -> Path | None:
    for dt in (0.0, -0.001, 0.001):
        p = folder / f"{video}_{t + dt:.3f}.pincam"
        if p.is_file():
            return p
    return None


def read_arkitscenes_frames(path: str | Path, *, frame_step: int = 1) -> Frames:
    """Frames of an ARKitScenes scene folder (every ``frame_step``-th, in time order)."""
    root = Path(path)
    traj_path = root / "lowres_wide.traj"
    times, poses = read_traj(traj_path)
    images = sorted((root / "lowres_wide").glob("*.png"))
    if not images:
        raise InputError("no lowres_wide/*.png frames", root / "lowres_wide")
    picked, names = [], []
    for img in images:
        video, _, stamp = img.stem.rpartition("_")
        try:
            t = float(stamp)
        except ValueError:
            raise InputError("frame name is not <video_id>_<timestamp>.png", img) from None
        j = int(np.argmin(np.abs(times - t)))
        if abs(times[j] - t) > ARKIT_TIME_TOLERANCE:
            raise InputError(f"no pose in {traj_path.name} within {ARKIT_TIME_TOLERANCE * 1000:g} ms of this frame "
                             f"(nearest {times[j]:.3f})", img)
        picked.append((img, video, t, poses[j]))
        names.append(img.name)
    specs = []
    for i in valid_poses([p[3] for p in picked], names, traj_path)[::frame_step]:
        img, video, t, pose = picked[i]
        pincam = _pincam(root / "lowres_wide_intrinsics", video, t)
        if pincam is None:
            raise InputError(f"no lowres_wide_intrinsics/{img.stem}.pincam (within 1 ms)", img)
        w_h_fx_fy_cx_cy = read_matrix(pincam, (6,))
        _, _, fx, fy, cx, cy = w_h_fx_fy_cx_cy
        try:
            K = check_intrinsics(np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]]))
        except InputError as exc:
            raise exc.at(pincam) from None
        depth = root / "lowres_depth" / img.name
        if not depth.is_file():
            raise InputError("frame has no depth image", depth)
        specs.append(FrameSpec(name=img.stem, color_path=img, intrinsics=K, cam_to_world=pose, depth_path=depth,
                               depth_scale=ARKIT_DEPTH_SCALE))
    return Frames.from_specs(specs)


def read_arkitscenes(path: str | Path, *, frame_step: int = 1, cloud_frame_step: int = CLOUD_FRAME_STEP,
                     voxel_size: float = 0.02) -> Scan:
    """Read an ARKitScenes scene: its frames, and its ``*_3dod_mesh.ply`` or a cloud fused from depth."""
    root = Path(path)
    mesh = next(iter(sorted(root.glob("*_3dod_mesh.ply"))), None)
    return capture_scan(root, root.name, "arkitscenes", read_arkitscenes_frames(root), frame_step=frame_step,
                        cloud_frame_step=cloud_frame_step, voxel_size=voxel_size,
                        cloud=None if mesh is None else read_ply_scene(mesh))
