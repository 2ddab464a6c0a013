"""Microsoft 7-Scenes layout: ``frame-NNNNNN.color.(png|jpg)``, ``.depth.png`` (uint16 mm, 0 and
65535 invalid), ``.pose.txt`` (4x4 camera-to-world) and ``camera-intrinsics.txt`` (3x3; the
dataset's published fx = fy = 585, cx = 320, cy = 240 are used when the file is absent).

7-Scenes has no reconstructed point cloud, so the scene is built by back-projecting the depth of
every ``cloud_frame_step``-th frame (:func:`~geopurify.io.layouts._capture.fuse_depth_frames`, shared by
every capture without a cloud; colour and depth come from different sensors and are not perfectly
registered: expect a few pixels of colour bleeding at depth edges).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...camera import check_intrinsics, check_pose
from ...errors import InputError
from ..frames import Frames, FrameSpec
from ..text import read_matrix
from ._capture import capture_scan
from ._common import Scan

SEVENSCENES_K = np.array([[585.0, 0, 320.0], [0, 585.0, 240.0], [0, 0, 1]])
SEVENSCENES_DEPTH_INVALID = (0, 65535)


def is_sevenscenes(root: Path) -> bool:
    return root.is_dir() and any(root.glob("frame-*.pose.txt"))


def read_sevenscenes_frames(root: str | Path, *, frame_step: int = 1) -> Frames:
    """Frames of a 7-Scenes sequence folder (every ``frame_step``-th, in name order)."""
    root = Path(root)
    poses = sorted(root.glob("frame-*.pose.txt"))
    if not poses:
        raise InputError("no frame-*.pose.txt files: not a 7-Scenes sequence folder", root)
    k_path = root / "camera-intrinsics.txt"
    if k_path.is_file():
        try:
            K = check_intrinsics(read_matrix(k_path))
        except InputError as exc:
            raise exc.at(k_path) from None
    else:
        K = SEVENSCENES_K
    specs = []
    for pose_path in poses[::frame_step]:
        stem = pose_path.name[: -len(".pose.txt")]
        color = next((root / f"{stem}.color{ext}" for ext in (".png", ".jpg") if (root / f"{stem}.color{ext}").is_file()),
                     None)
        if color is None:
            raise InputError(f"frame {stem} has a pose but no {stem}.color.png/.jpg", pose_path)
        depth = root / f"{stem}.depth.png"
        if not depth.is_file():
            raise InputError(f"frame {stem} has no depth image", depth)
        try:
            pose = check_pose(read_matrix(pose_path, (4, 4)))
        except InputError as exc:
            raise exc.at(pose_path) from None
        specs.append(FrameSpec(name=stem, color_path=color, intrinsics=K, cam_to_world=pose, depth_path=depth,
                               depth_scale=1000.0, depth_invalid=SEVENSCENES_DEPTH_INVALID))
    return Frames.from_specs(specs)


def read_sevenscenes(path: str | Path, *, frame_step: int = 1, cloud_frame_step: int = 10,
                     voxel_size: float = 0.02) -> Scan:
    """Read a 7-Scenes sequence: all frames, and a point cloud fused from some of them."""
    root = Path(path)
    return capture_scan(root, root.name, "7scenes", read_sevenscenes_frames(root), frame_step=frame_step,
                        cloud_frame_step=cloud_frame_step, voxel_size=voxel_size)
