"""Which points a frame sees: the pinhole projection of :mod:`geopurify.camera` and a depth test.

A point is *visible* in a frame when it is in front of the camera, projects inside the colour image
less a ``border`` (pixel ``(round(v), round(u))``), and passes the relative depth test

    ``|depth[v_d, u_d] - z| <= tau * depth[v_d, u_d]``   (``depth = 0``, invalid, fails)

where ``(u_d, v_d)`` is its pixel in the depth image (the same camera at the depth image's
resolution). Frames without a depth image get one rendered from the points by z-buffer splatting
(:func:`geopurify.render.render_depth`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..camera import project, scale_intrinsics, world_to_camera
from ..io.frames import Frame
from ..render import point_spacing, render_depth


@dataclass(frozen=True, eq=False)
class Visibility:
    """The points one frame sees.

    Attributes:
        index: ``(M,) int64`` indices of the visible points, increasing.
        pixels: ``(M, 2) int64`` their colour-image pixel ``(row, col)``.
    """

    index: torch.Tensor
    pixels: torch.Tensor


def frame_depth(coords: torch.Tensor, frame: Frame, *, spacing: float | None = None, render_width: int = 320,
                max_splat_radius: int = 6) -> tuple[torch.Tensor, np.ndarray]:
    """The frame's depth image ``(h, w) float32`` (metres) and its intrinsics; rendered from ``coords``
    at ``render_width`` (same field of view) when the frame has none."""
    if frame.depth is not None:
        return frame.depth, frame.depth_intrinsics
    W, H = frame.size
    w = min(render_width, W)
    h = max(1, round(H * w / W))
    K_d = scale_intrinsics(frame.intrinsics, (W, H), (w, h))
    sp = point_spacing(coords) if spacing is None else spacing
    depth, _ = render_depth(coords, frame.cam_to_world, K_d, (w, h), sp, max_splat_radius)
    return depth, K_d


def visible_points(coords: torch.Tensor, frame: Frame, *, depth_tolerance: float = 0.05, border: int = 10,
                   spacing: float | None = None, render_width: int = 320, max_splat_radius: int = 6) -> Visibility:
    """Which points a frame sees, and where (module docstring); vectorised over points.

    Args:
        coords: ``(N, 3) float32`` world points, metres; column-major (``coords.T.contiguous().T``, as
            :func:`~geopurify.lifting.lift_features` passes them) is about twice as fast.
        frame: the frame; without depth, a depth image ``render_width`` wide is rendered from
            ``coords`` with splats sized by ``spacing`` (default: measured from ``coords``).
        depth_tolerance: ``tau`` of the relative depth test.
        border: margin in colour pixels.
    Returns:
        :class:`Visibility` of the visible points.
    """
    W, H = frame.size
    cam = world_to_camera(coords, frame.cam_to_world)
    z = cam[:, 2]
    uv = project(cam, frame.intrinsics).round_()
    u, v = uv.unbind(1)
    inside = u >= border                                  # inf (behind the camera) and NaN compare False
    inside &= u < W - border
    inside &= v >= border
    inside &= v < H - border
    idx = torch.nonzero(inside).flatten()
    depth, K_d = frame_depth(coords, frame, spacing=spacing, render_width=render_width,
                             max_splat_radius=max_splat_radius)
    h, w = depth.shape
    u, v, z = u[idx], v[idx], z[idx]
    if np.array_equal(K_d, frame.intrinsics):
        du, dv = u, v
    else:
        duv = project(cam[idx], K_d).round_()
        du, dv = duv[:, 0], duv[:, 1]
    ok = (du >= 0) & (du < w) & (dv >= 0) & (dv < h)
    if bool(ok.all()):
        d = depth.reshape(-1)[dv.long() * w + du.long()]
    else:
        d = torch.zeros_like(z)
        d[ok] = depth[dv[ok].long(), du[ok].long()]
    passes = torch.nonzero((d > 0) & ((d - z).abs() <= depth_tolerance * d)).flatten()
    return Visibility(index=idx[passes], pixels=torch.stack([v[passes], u[passes]], 1).long())
