"""Microsoft 7-Scenes layout: ``frame-NNNNNN.color.(png|jpg)``, ``.depth.png`` (uint16 mm, 0 and
65535 invalid), ``.pose.txt`` (4x4 camera-to-world) and ``camera-intrinsics.txt`` (3x3; the
dataset's published fx = fy = 585, cx = 320, cy = 240 are used when the file is absent).

7-Scenes has no reconstructed point cloud, so the scene is built by back-projecting the depth of
every ``cloud_frame_step``-th frame, merging the points on a voxel grid and colouring them from the
colour image of the same frame (colour and depth come from different sensors and are not perfectly
registered: expect a few pixels of colour bleeding at depth edges).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...camera import backproject_depth, camera_to_world, check_intrinsics, check_pose
from ...errors import InputError
from ...geometry import voxelize
from ..frames import Frames, FrameSpec
from ..text import read_matrix
from ._common import Scan, build_scene

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


def fuse_depth_frames(frames: Frames, voxel_size: float = 0.02, max_depth: float = 4.0,
                      pixel_step: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Back-project depth frames to one coloured point cloud, one point per occupied voxel.

    Args:
        frames: frames with depth.
        voxel_size: merge points closer than this (metres); the first frame's point wins.
        max_depth: ignore depths beyond this (metres), where depth noise is large.
        pixel_step: use every ``pixel_step``-th pixel row and column.
    Returns:
        xyz ``(N, 3) float32`` world points and rgb ``(N, 3) float32`` in [0, 1].
    """
    xyz_all, rgb_all = [], []
    for frame in frames:
        if frame.depth is None:
            raise InputError(f"frame {frame.name} has no depth to fuse")
        depth = frame.depth.clone()
        depth[depth > max_depth] = 0
        mask = torch.zeros_like(depth, dtype=torch.bool)
        mask[::pixel_step, ::pixel_step] = True
        depth[~mask] = 0
        pts_cam, pix = backproject_depth(depth, frame.depth_intrinsics)
        # colour pixel of each depth pixel (same field of view, possibly another resolution)
        H, W = frame.image.shape[:2]
        h, w = depth.shape
        r = ((pix[:, 0].to(torch.float64) + 0.5) * H / h - 0.5).round().long().clamp(0, H - 1)
        c = ((pix[:, 1].to(torch.float64) + 0.5) * W / w - 0.5).round().long().clamp(0, W - 1)
        xyz_all.append(camera_to_world(pts_cam, torch.from_numpy(frame.cam_to_world)))
        rgb_all.append(frame.image[r, c].to(torch.float32) / 255.0)
    if not xyz_all:
        raise InputError("no frames to fuse")
    xyz, rgb = torch.cat(xyz_all), torch.cat(rgb_all)
    if xyz.shape[0] == 0:
        raise InputError("the depth frames contain no valid depth")
    grid = voxelize(xyz, voxel_size)
    first = torch.full((grid.num_voxels,), xyz.shape[0], dtype=torch.int64)
    first.scatter_reduce_(0, grid.inverse, torch.arange(xyz.shape[0]), reduce="amin")
    return xyz[first], rgb[first]


def read_sevenscenes(path: str | Path, *, frame_step: int = 1, cloud_frame_step: int = 10,
                     voxel_size: float = 0.02) -> Scan:
    """Read a 7-Scenes sequence: all frames, and a point cloud fused from some of them."""
    root = Path(path)
    frames = read_sevenscenes_frames(root, frame_step=frame_step)
    cloud_frames = read_sevenscenes_frames(root, frame_step=cloud_frame_step)
    try:
        xyz, rgb = fuse_depth_frames(cloud_frames, voxel_size=voxel_size)
    except InputError as exc:
        raise exc.at(path) from None
    viewpoints = cloud_frames.poses[:, :3, 3].to(torch.float32)
    scene, est = build_scene(root, root.name, xyz.numpy(), rgb.numpy(), None, viewpoint=viewpoints)
    return Scan(scene, frames, "7scenes", root, normals_estimated=est)
