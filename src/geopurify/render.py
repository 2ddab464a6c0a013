"""Z-buffer splatting of point clouds into depth (and any per-point value) images.

Used where a frame has no depth image (the occlusion test of lifting needs one) and by the
simulator. Each point is drawn as a square splat whose half-width in pixels follows the point
spacing and its depth, ``r = ceil(0.5 * spacing * f / z)``, capped at ``max_radius``.
:func:`fill_holes` closes the gaps left between splats from the nearest valid neighbour pixel.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .camera import project, world_to_camera
from .geometry import knn


def point_spacing(coords: torch.Tensor, sample: int = 20_000, seed: int = 0) -> float:
    """Median distance from a point to its nearest neighbour (metres), on a random sample."""
    n = coords.shape[0]
    if n < 2:
        return 0.0
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=g)[: min(sample, n)]
    d, _ = knn(coords[idx], coords, 2)
    return float(d[:, 1].median())


def render_depth(points: torch.Tensor, cam_to_world: np.ndarray | torch.Tensor, K: np.ndarray,
                 size: tuple[int, int], spacing: float, max_radius: int = 6,
                 values: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Render the nearest surface seen by a camera.

    Args:
        points: ``(N, 3)`` world points.
        cam_to_world: ``(4, 4)`` pose; ``K``: ``(3, 3)`` intrinsics of the rendered image.
        size: ``(W, H)`` of the rendered image.
        spacing: typical point spacing in metres (see :func:`point_spacing`); 0 draws single pixels.
        max_radius: cap on the splat half-width in pixels.
        values: optional ``(N, ...)`` per-point values to render alongside (e.g. labels, colours).
    Returns:
        depth: ``(H, W) float32`` z-depth in metres, 0 where no point lands.
        rendered: ``(H, W, ...)`` the value of the nearest point at each pixel (``values``' dtype;
            zeros where empty), or None.
    """
    W, H = size
    cam = world_to_camera(points.to(torch.float64), torch.as_tensor(np.asarray(cam_to_world))).to(torch.float32)
    uv = project(cam, K)
    z = cam[:, 2]
    front = torch.isfinite(uv).all(1) & (z > 0)
    idx = torch.nonzero(front).flatten()
    u = uv[idx, 0].round().long()
    v = uv[idx, 1].round().long()
    zf = z[idx]
    radius = torch.ceil(0.5 * spacing * float(K[0, 0]) / zf).clamp(0, max_radius).long() if spacing > 0 \
        else torch.zeros_like(u)
    r_max = int(radius.max()) if radius.numel() else 0
    # candidate (pixel, depth, point) triples from every splat offset
    pix_all, z_all, pt_all = [], [], []
    for dy in range(-r_max, r_max + 1):
        for dx in range(-r_max, r_max + 1):
            m = radius >= max(abs(dx), abs(dy))
            uu, vv = u[m] + dx, v[m] + dy
            ok = (uu >= 0) & (uu < W) & (vv >= 0) & (vv < H)
            pix_all.append(vv[ok] * W + uu[ok])
            z_all.append(zf[m][ok])
            pt_all.append(idx[m][ok])
    depth_flat = torch.zeros(H * W, dtype=torch.float32)
    rendered = None
    if pix_all:
        pix, zz, pts = torch.cat(pix_all), torch.cat(z_all), torch.cat(pt_all)
        zmin = torch.full((H * W,), math.inf, dtype=torch.float32).scatter_reduce(0, pix, zz, "amin")
        depth_flat = torch.where(torch.isfinite(zmin), zmin, torch.zeros_like(zmin))
        if values is not None:
            win = zz == zmin[pix]
            owner = torch.full((H * W,), -1, dtype=torch.int64)
            owner[pix[win]] = pts[win]  # ties: any of the equally near points
            rendered = torch.zeros((H * W, *values.shape[1:]), dtype=values.dtype)
            hit = owner >= 0
            rendered[hit] = values[owner[hit]]
            rendered = rendered.view(H, W, *values.shape[1:])
    elif values is not None:
        rendered = torch.zeros((H, W, *values.shape[1:]), dtype=values.dtype)
    return depth_flat.view(H, W), rendered


def fill_holes(depth: torch.Tensor, values: torch.Tensor, iterations: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill empty pixels (depth 0) that have a valid 8-neighbour with the nearest such neighbour's depth
    and values; repeated ``iterations`` times. ``values``: ``(H, W, C)``."""
    h, w = depth.shape
    for _ in range(iterations):
        empty = depth <= 0
        if not bool(empty.any()):
            break
        d = torch.where(empty, torch.full_like(depth, math.inf), depth)
        pd = torch.nn.functional.pad(d[None, None], (1, 1, 1, 1), value=math.inf)[0, 0]
        pv = torch.nn.functional.pad(values.permute(2, 0, 1)[None], (1, 1, 1, 1))[0].permute(1, 2, 0)
        best_d = torch.full_like(depth, math.inf)
        best_v = torch.zeros_like(values)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy == 0 and dx == 0:
                    continue
                nd = pd[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                nv = pv[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                better = nd < best_d
                best_d = torch.where(better, nd, best_d)
                best_v = torch.where(better[..., None], nv, best_v)
        fill = empty & torch.isfinite(best_d)
        depth = torch.where(fill, best_d, depth)
        values = torch.where(fill[..., None], best_v, values)
    return depth, values
