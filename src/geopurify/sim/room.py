"""A procedurally generated furnished room with ScanNet20 labels and instances.

The room is built from axis-aligned boxes whose visible faces are sampled uniformly (area-weighted,
``density`` points per m²). It has a floor and four walls (no ceiling, like ScanNet scans), a door,
a window with curtains, a picture, a table with four chairs, a sofa, a bed, a cabinet, a desk and a
bookshelf. Object placement jitters with the seed; the result is deterministic for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..io.scene import Scene
from ..labels import SCANNET20

# base sRGB colour per class, [0, 1]
_COLORS = {
    "wall": (0.82, 0.80, 0.74), "floor": (0.55, 0.42, 0.30), "door": (0.62, 0.47, 0.33),
    "window": (0.70, 0.82, 0.90), "curtain": (0.55, 0.20, 0.22), "picture": (0.25, 0.35, 0.55),
    "table": (0.45, 0.30, 0.18), "chair": (0.20, 0.20, 0.22), "sofa": (0.30, 0.45, 0.35),
    "bed": (0.85, 0.85, 0.88), "cabinet": (0.75, 0.72, 0.65), "desk": (0.60, 0.55, 0.45),
    "bookshelf": (0.40, 0.26, 0.16),
}


@dataclass(frozen=True)
class _Box:
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    cls: str
    instance: int
    skip_bottom: bool = True


def _furniture(rng: np.random.Generator, W: float, D: float) -> list[_Box]:
    boxes: list[_Box] = []
    inst = iter(range(10, 1000))

    def legs(x0: float, y0: float, x1: float, y1: float, top: float, t: float, cls: str, k: int) -> None:
        for x, y in ((x0, y0), (x1 - t, y0), (x0, y1 - t), (x1 - t, y1 - t)):
            boxes.append(_Box((x, y, 0.0), (x + t, y + t, top), cls, k))

    j = lambda s=0.1: float(rng.uniform(-s, s))  # noqa: E731
    # door, window, curtains, picture: thin boxes on the walls
    dx = 0.5 + j()
    boxes.append(_Box((dx, 0.0, 0.0), (dx + 0.9, 0.03, 2.05), "door", next(inst)))
    wy = 1.6 + j()
    boxes.append(_Box((W - 0.04, wy, 0.9), (W, wy + 1.4, 2.1), "window", next(inst)))
    for y in (wy - 0.3, wy + 1.4):
        boxes.append(_Box((W - 0.12, y, 0.15), (W - 0.07, y + 0.3, 2.4), "curtain", next(inst)))
    py = 2.0 + j()
    boxes.append(_Box((0.0, py, 1.3), (0.03, py + 1.0, 1.9), "picture", next(inst)))
    # table with four chairs
    tx, ty = 2.3 + j(), 2.0 + j()
    k = next(inst)
    boxes.append(_Box((tx, ty, 0.72), (tx + 1.4, ty + 0.9, 0.76), "table", k, skip_bottom=False))
    legs(tx + 0.05, ty + 0.05, tx + 1.35, ty + 0.85, 0.72, 0.06, "table", k)
    for cx, cy, back in ((tx + 0.25, ty - 0.55, "s"), (tx + 0.75, ty - 0.55, "s"),
                         (tx + 0.25, ty + 1.0, "n"), (tx + 0.75, ty + 1.0, "n")):
        k = next(inst)
        boxes.append(_Box((cx, cy, 0.44), (cx + 0.44, cy + 0.44, 0.48), "chair", k, skip_bottom=False))
        legs(cx, cy, cx + 0.44, cy + 0.44, 0.44, 0.04, "chair", k)
        by = cy if back == "s" else cy + 0.40
        boxes.append(_Box((cx, by, 0.48), (cx + 0.44, by + 0.04, 0.95), "chair", k))
    # sofa against the north wall
    sx = 0.3 + j()
    k = next(inst)
    boxes.append(_Box((sx, D - 0.95, 0.0), (sx + 2.0, D - 0.05, 0.42), "sofa", k))
    boxes.append(_Box((sx, D - 0.25, 0.42), (sx + 2.0, D - 0.05, 0.85), "sofa", k))
    for ax in (sx, sx + 1.8):
        boxes.append(_Box((ax, D - 0.95, 0.42), (ax + 0.2, D - 0.25, 0.62), "sofa", k))
    # bed in the north-east corner
    k = next(inst)
    bx = W - 2.1 + j(0.05)
    boxes.append(_Box((bx, D - 1.65, 0.0), (bx + 2.0, D - 0.05, 0.5), "bed", k))
    boxes.append(_Box((bx + 1.9, D - 1.65, 0.5), (bx + 2.0, D - 0.05, 1.0), "bed", k))
    # cabinet and desk along the south wall, bookshelf on the west wall
    cx = W - 1.4 + j(0.05)
    boxes.append(_Box((cx, 0.0, 0.0), (cx + 1.3, 0.6, 0.9), "cabinet", next(inst)))
    dx2 = 2.8 + j()
    k = next(inst)
    boxes.append(_Box((dx2, 0.0, 0.72), (dx2 + 1.2, 0.6, 0.75), "desk", k, skip_bottom=False))
    legs(dx2 + 0.02, 0.02, dx2 + 1.18, 0.58, 0.72, 0.05, "desk", k)
    by = 3.2 + j(0.05)
    k = next(inst)
    boxes.append(_Box((0.0, by, 0.0), (0.35, by + 0.8, 1.9), "bookshelf", k))
    return boxes


def _sample_box(box: _Box, density: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.array(box.lo), np.array(box.hi)
    pts, nrm = [], []
    for axis in range(3):
        for side, sign in ((lo, -1.0), (hi, 1.0)):
            if axis == 2 and sign < 0 and box.skip_bottom:
                continue
            a, b = [i for i in range(3) if i != axis]
            area = (hi[a] - lo[a]) * (hi[b] - lo[b])
            n = rng.poisson(area * density)
            p = np.empty((n, 3))
            p[:, a] = rng.uniform(lo[a], hi[a], n)
            p[:, b] = rng.uniform(lo[b], hi[b], n)
            p[:, axis] = side[axis]
            nv = np.zeros((n, 3))
            nv[:, axis] = sign
            pts.append(p)
            nrm.append(nv)
    return np.concatenate(pts), np.concatenate(nrm)


def make_room(seed: int = 0, density: float = 500.0, size: tuple[float, float, float] = (6.0, 5.0, 2.7),
              color_noise: float = 0.03) -> Scene:
    """Generate the furnished room.

    Args:
        seed: controls furniture jitter, sampling and colour noise.
        density: surface points per square metre (500 gives about 60k points).
        size: room ``(W, D, H)`` in metres; the floor is ``z = 0``, walls at ``x = 0, W`` and
            ``y = 0, D``.
        color_noise: standard deviation of per-point colour noise.
    Returns:
        A :class:`~geopurify.io.Scene` named ``room-<seed>`` with ScanNet20 labels and instances.
    """
    rng = np.random.default_rng(seed)
    W, D, H = size
    pts, nrm, cls, inst = [], [], [], []

    def add(p: np.ndarray, n: np.ndarray, c: str, k: int) -> None:
        pts.append(p)
        nrm.append(n)
        cls.append(np.full(len(p), SCANNET20.index(c)))
        inst.append(np.full(len(p), k))

    # floor and walls: single planes facing into the room
    planes = [("floor", 2, 0.0, 1.0, 0), ("wall", 0, 0.0, 1.0, 1), ("wall", 0, W, -1.0, 2),
              ("wall", 1, 0.0, 1.0, 3), ("wall", 1, D, -1.0, 4)]
    for c, axis, pos, sign, k in planes:
        a, b = [i for i in range(3) if i != axis]
        ext = np.array([W, D, H])
        n = rng.poisson(ext[a] * ext[b] * density)
        p = np.empty((n, 3))
        p[:, a] = rng.uniform(0, ext[a], n)
        p[:, b] = rng.uniform(0, ext[b], n)
        p[:, axis] = pos
        nv = np.zeros((n, 3))
        nv[:, axis] = sign
        add(p, nv, c, k)
    for box in _furniture(rng, W, D):
        p, n = _sample_box(box, density, rng)
        add(p, n, box.cls, box.instance)
    coords = np.concatenate(pts).astype(np.float32)
    labels = np.concatenate(cls).astype(np.int64)
    instances = np.concatenate(inst).astype(np.int64)
    table = np.array([_COLORS.get(name, (0.5, 0.5, 0.5)) for name in SCANNET20.class_names])
    uniq, inv = np.unique(instances, return_inverse=True)
    tint = rng.normal(0, 0.04, (len(uniq), 3))
    colors = table[labels] + tint[inv]
    colors = np.clip(colors + rng.normal(0, color_noise, colors.shape), 0, 1).astype(np.float32)
    return Scene(name=f"room-{seed}", coords=torch.from_numpy(coords), colors=torch.from_numpy(colors),
                 normals=torch.from_numpy(np.concatenate(nrm).astype(np.float32)),
                 labels=torch.from_numpy(labels), label_set=SCANNET20, instances=torch.from_numpy(instances))
