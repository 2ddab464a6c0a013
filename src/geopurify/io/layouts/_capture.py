"""What every RGB-D capture reader shares: dropping unusable poses (counted), and fusing a point cloud
from depth frames when the capture has none (one function for every layout)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ...camera import backproject_depth, camera_to_world, check_pose
from ...errors import InputError
from ...geometry import voxelize
from ..frames import Frames
from ._common import Scan, build_scene

log = logging.getLogger("geopurify.io")

#: fuse every 10th frame by default (as for 7-Scenes): neighbouring frames see the same surface
CLOUD_FRAME_STEP = 10


def valid_poses(poses: Sequence[np.ndarray], names: Sequence[str], path: Path) -> list[int]:
    """Indices of the poses that are finite rigid ``cam_to_world`` transforms (:func:`~geopurify.camera.check_pose`).

    The others are skipped with one warning that counts them and names the first.

    Raises:
        InputError: naming ``path`` when no pose is left.
    """
    keep, bad = [], []
    for i, T in enumerate(poses):
        try:
            check_pose(T)
            keep.append(i)
        except InputError as exc:
            bad.append(f"{names[i]} ({exc.problem})")
    if bad:
        log.warning("%s: skipped %d of %d frames with NaN, missing or non-rigid poses (first: %s)",
                    path, len(bad), len(poses), bad[0])
    if not keep:
        raise InputError(f"none of the {len(poses)} poses is a finite rigid transform (first: {bad[0] if bad else '-'})",
                         path)
    return keep


def fuse_depth_frames(frames: Frames, voxel_size: float = 0.02, max_depth: float = 4.0,
                      pixel_step: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Back-project depth frames to one coloured point cloud, one point per occupied voxel.

    Each frame is first reduced on a grid anchored at the world origin (memory grows with the scene, not
    with the number of frames), then the reduced points on the grid of :func:`~geopurify.geometry.voxelize`
    (anchored at their minimum). Each voxel keeps the first point that fell in it (frames in order, pixels
    in row-major order) and the mean colour of all the pixels merged into it.

    Args:
        frames: frames with depth.
        voxel_size: voxel edge (metres).
        max_depth: ignore depths beyond this (metres), where depth noise is large.
        pixel_step: use every ``pixel_step``-th depth row and column.
    Returns:
        xyz ``(N, 3) float32`` world points (metres) and rgb ``(N, 3) float32`` mean colours in [0, 1].
    Raises:
        InputError: no frames, a frame without depth, or no valid depth at all.
    """
    if len(frames) == 0:
        raise InputError("no frames to fuse")
    xyz_all, rgb_all, n_all = [], [], []
    origin = torch.zeros(3, dtype=torch.float64)
    for frame in tqdm(frames, desc="fuse depth", unit="frame", leave=False, disable=len(frames) < 50):
        if frame.depth is None:
            raise InputError(f"frame {frame.name} has no depth to fuse")
        sub = frame.depth[::pixel_step, ::pixel_step]
        depth = torch.zeros_like(frame.depth)
        depth[::pixel_step, ::pixel_step] = torch.where(sub > max_depth, torch.zeros_like(sub), sub)
        pts_cam, pix = backproject_depth(depth, frame.depth_intrinsics)
        if pts_cam.shape[0] == 0:
            continue
        # colour pixel of each depth pixel (same field of view, possibly another resolution)
        H, W = frame.image.shape[:2]
        h, w = depth.shape
        r = ((pix[:, 0].to(torch.float64) + 0.5) * H / h - 0.5).round().long().clamp(0, H - 1)
        c = ((pix[:, 1].to(torch.float64) + 0.5) * W / w - 0.5).round().long().clamp(0, W - 1)
        xyz = camera_to_world(pts_cam, torch.from_numpy(frame.cam_to_world))
        rgb = frame.image[r, c].to(torch.float32) / 255.0
        xyz, rgb_sum, n = _reduce(xyz, rgb, torch.ones(len(xyz)), voxel_size, origin)   # per frame first
        xyz_all.append(xyz), rgb_all.append(rgb_sum), n_all.append(n)
    if not xyz_all:
        raise InputError("the depth frames contain no valid depth")
    xyz, rgb_sum, n = _reduce(torch.cat(xyz_all), torch.cat(rgb_all), torch.cat(n_all), voxel_size, None)
    return xyz, rgb_sum / n[:, None]


def _reduce(xyz: torch.Tensor, rgb_sum: torch.Tensor, n: torch.Tensor, voxel_size: float,
            origin: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Merge points per voxel: first point, summed colour and count."""
    grid = voxelize(xyz, voxel_size, origin=origin)
    first = torch.full((grid.num_voxels,), xyz.shape[0], dtype=torch.int64)
    first.scatter_reduce_(0, grid.inverse, torch.arange(xyz.shape[0]), reduce="amin")
    sums = torch.zeros(grid.num_voxels, 3).index_add_(0, grid.inverse, rgb_sum)
    counts = torch.zeros(grid.num_voxels).index_add_(0, grid.inverse, n)
    return xyz[first], sums, counts


def capture_scan(path: Path, name: str, layout: str, everything: Frames, *, frame_step: int = 1,
                 cloud_frame_step: int = CLOUD_FRAME_STEP, voxel_size: float = 0.02, cloud: Scan | None = None) -> Scan:
    """The :class:`Scan` of a capture: every ``frame_step``-th of ``everything``, and the ``cloud`` the capture
    ships (a scan read from its PLY or mesh) or else one fused (:func:`fuse_depth_frames`) from every
    ``cloud_frame_step``-th frame, normals estimated and oriented towards those frames' cameras."""
    frames = everything.subsample(frame_step)
    if cloud is not None:
        return dataclasses.replace(cloud, frames=frames, layout=layout, path=path)
    cloud_frames = everything.subsample(cloud_frame_step)
    try:
        xyz, rgb = fuse_depth_frames(cloud_frames, voxel_size=voxel_size)
    except InputError as exc:
        raise exc.at(path) from None
    viewpoints = cloud_frames.poses[:, :3, 3].to(torch.float32)
    scene, est = build_scene(path, name, xyz.numpy(), rgb.numpy(), None, viewpoint=viewpoints)
    return Scan(scene, frames, layout, path, normals_estimated=est)


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; a missing, unreadable or malformed file is an :class:`InputError`."""
    import json

    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", path) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc})", path) from None
    if not isinstance(meta, dict):
        raise InputError(f"expected a JSON object, got {type(meta).__name__}", path)
    return meta


def existing(path: Path, what: str, listed_in: Path) -> Path:
    """``path`` if it is a file, else an :class:`InputError` naming it and the file that listed it."""
    if not path.is_file():
        raise InputError(f"{what} listed in {listed_in.name} is missing", path)
    return path
