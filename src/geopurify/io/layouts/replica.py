"""Replica as rendered by NICE-SLAM (and used by NICE-SLAM, ConceptGraphs, ...).

Files: ``<scene>/results/frame000000.jpg``, ``<scene>/results/depth000000.png`` (uint16, metres x 6553.5),
``<scene>/traj.txt`` (one row-major 4x4 camera-to-world per line), and optionally the mesh
``<scene>_mesh.ply`` beside the scene folder. Intrinsics are the dataset config's (NICE-SLAM
``configs/Replica/replica.yaml``, ConceptGraphs ``dataconfigs/replica/replica.yaml``): 1200x680,
fx = fy = 600, cx = 599.5, cy = 339.5. Source convention: ``traj.txt`` is camera-to-world with an OpenCV
camera (NICE-SLAM's loader negates columns 1 and 2 to reach its own OpenGL convention), so no flip here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import InputError
from ..frames import Frames, FrameSpec
from ..text import read_matrix
from ._capture import CLOUD_FRAME_STEP, capture_scan, valid_poses
from ._common import Scan, numeric_stem
from .generic import read_ply_scene

REPLICA_K = np.array([[600.0, 0, 599.5], [0, 600.0, 339.5], [0, 0, 1]])
REPLICA_DEPTH_SCALE = 6553.5


def is_replica(root: Path) -> bool:
    return root.is_dir() and (root / "traj.txt").is_file() and (root / "results").is_dir()


def read_replica_frames(path: str | Path, *, frame_step: int = 1) -> Frames:
    """Frames of a NICE-SLAM Replica scene folder (every ``frame_step``-th line of ``traj.txt``)."""
    root = Path(path)
    traj_path = root / "traj.txt"
    traj = read_matrix(traj_path)
    if traj.shape[1] != 16:
        raise InputError(f"expected 16 numbers per line (a row-major 4x4 pose), got {traj.shape[1]}", traj_path)
    colors = sorted((root / "results").glob("frame*.jpg"), key=numeric_stem)
    if len(colors) < len(traj):
        raise InputError(f"{traj_path.name} has {len(traj)} poses but results/ holds {len(colors)} frame*.jpg",
                         root / "results")
    poses = list(traj.reshape(-1, 4, 4))
    specs = []
    for i in valid_poses(poses, [c.name for c in colors[: len(poses)]], traj_path)[::frame_step]:
        color = colors[i]
        depth = color.with_name(color.name.replace("frame", "depth", 1)).with_suffix(".png")
        if not depth.is_file():
            raise InputError(f"frame {color.name} has no depth image", depth)
        specs.append(FrameSpec(name=color.stem, color_path=color, intrinsics=REPLICA_K, cam_to_world=poses[i],
                               depth_path=depth, depth_scale=REPLICA_DEPTH_SCALE))
    return Frames.from_specs(specs)


def read_replica(path: str | Path, *, frame_step: int = 1, cloud_frame_step: int = CLOUD_FRAME_STEP,
                 voxel_size: float = 0.02) -> Scan:
    """Read a NICE-SLAM Replica scene: its frames, and ``<scene>_mesh.ply`` or a cloud fused from depth."""
    root = Path(path)
    mesh = root.parent / f"{root.name}_mesh.ply"
    return capture_scan(root, root.name, "replica", read_replica_frames(root), frame_step=frame_step,
                        cloud_frame_step=cloud_frame_step, voxel_size=voxel_size,
                        cloud=read_ply_scene(mesh) if mesh.is_file() else None)
