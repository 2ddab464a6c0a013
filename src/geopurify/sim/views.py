"""A virtual camera rig inside a scanned room, and rendering of colour, depth, label and instance images.

Cameras (:func:`room_cameras`) stand at ``height`` above the floor (1.2-1.7 m), look across the room
with yaws spread around it (each camera on the opposite side of the room centre from where it looks)
and pitch down by 15-35 degrees, with ScanNet-like 320x240 intrinsics (``fx = fy = 289``, 58 degrees
horizontal field of view). A camera closer than ``clearance`` to any point is moved.

Images are rendered by z-buffer splatting of the points (:func:`geopurify.render.render_depth`, splat
size from depth and point spacing), then holes left between splats are filled from the nearest valid
neighbour pixel (:func:`geopurify.render.fill_holes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..camera import look_at
from ..io.frames import Frame, Frames
from ..io.scene import Scene
from ..render import fill_holes, point_spacing, render_depth

SCANNET_K_320 = np.array([[289.0, 0.0, 159.5], [0.0, 289.0, 119.5], [0.0, 0.0, 1.0]])


@dataclass(frozen=True, eq=False)
class RenderedView:
    """One rendered view: the :class:`Frame` (colour, depth, pose, K) plus ground-truth images.

    ``labels`` and ``instances``: ``(H, W) int64``, -1 where no point (or an ignored label) lands.
    """

    frame: Frame
    labels: torch.Tensor
    instances: torch.Tensor


def room_cameras(scene: Scene, num_views: int = 40, *, seed: int = 0, height: tuple[float, float] = (1.2, 1.7),
                 pitch_deg: tuple[float, float] = (-35.0, -15.0), clearance: float = 0.3) -> list[np.ndarray]:
    """``num_views`` camera-to-world ``(4, 4)`` poses inside the room (module docstring); seeded."""
    rng = np.random.default_rng(seed)
    xyz = scene.coords.numpy().astype(np.float64)
    floor = float(np.percentile(xyz[:, 2], 1))
    lo, hi = np.percentile(xyz[:, :2], 3, axis=0), np.percentile(xyz[:, :2], 97, axis=0)
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    tree = cKDTree(xyz)                                   # one tree for every placement attempt
    poses = []
    for i in range(num_views):
        yaw = 2 * math.pi * (i + rng.uniform(-0.3, 0.3)) / num_views
        pose = None
        for attempt in range(30):
            d = np.array([math.cos(yaw), math.sin(yaw)])
            back = rng.uniform(0.15, 0.6) * (1 - attempt / 30)
            xy = centre - d * half * back + rng.normal(0, 0.1, 2) * half
            eye = np.array([*xy, floor + rng.uniform(*height)])
            dist, _ = tree.query(eye.astype(np.float32).astype(np.float64))
            if float(np.float32(dist)) >= clearance or attempt == 29:
                pitch = math.radians(rng.uniform(*pitch_deg))
                fwd = np.array([math.cos(pitch) * d[0], math.cos(pitch) * d[1], math.sin(pitch)])
                pose = look_at(eye, eye + fwd)
                break
        poses.append(np.asarray(pose, dtype=np.float64))
    return poses


def render_views(scene: Scene, poses: list[np.ndarray], *, K: np.ndarray = SCANNET_K_320,
                 size: tuple[int, int] = (320, 240), max_radius: int = 6, name: str = "view") -> list[RenderedView]:
    """Render colour, depth, labels and instances for each pose (module docstring)."""
    spacing = point_spacing(scene.coords)
    n = scene.num_points
    labels = scene.labels if scene.labels is not None else torch.full((n,), -1, dtype=torch.int64)
    inst = scene.instances if scene.instances is not None else torch.full((n,), -1, dtype=torch.int64)
    # +1 so that 0 means "no point" in the rendered images
    vals = torch.cat([scene.colors, (labels + 1).float()[:, None], (inst + 1).float()[:, None]], 1)
    views = []
    for i, pose in enumerate(poses):
        depth, img = render_depth(scene.coords, pose, K, size, spacing, max_radius, values=vals)
        depth, img = fill_holes(depth, img)  # type: ignore[arg-type]  # values given: an image is rendered
        rgb = (img[..., :3].clamp(0, 1) * 255).round().to(torch.uint8)
        frame = Frame(f"{name}{i:03d}", rgb, K, pose, depth)
        views.append(RenderedView(frame, img[..., 3].round().long() - 1, img[..., 4].round().long() - 1))
    return views


def views_to_frames(views: list[RenderedView]) -> Frames:
    return Frames.from_frames([v.frame for v in views])
