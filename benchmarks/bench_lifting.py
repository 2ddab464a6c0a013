"""Lifting throughput without the encoder: projection + depth test + gather + fusion.

A 150k-point generated room, 100 frames of 320x240 with rendered depth, 512-d feature maps held in
memory (the encoder's cost is excluded). Compared in the same run with a plain re-implementation of
OpenScene's per-frame numpy mapping (``PointCloudToImageMapper.compute_mapping`` + running mean).

A second table times the visibility test alone (projection + depth test, ``visible_points``) on the
real 7-Scenes kitchen (91k points, 640x480 depth) against the same rule in plain float64 numpy
(OpenScene's mapper), with their agreement; it is skipped when ``../shared/data`` is absent.

Usage: ``python benchmarks/bench_lifting.py [--points 150000] [--frames 100] [--dim 512]``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from _table import print_table
from geopurify import Frame, Frames, load_scan
from geopurify.camera import look_at
from geopurify.encoders.maps import DenseFeatures
from geopurify.lifting import LiftConfig, lift_features, visible_points
from geopurify.render import point_spacing, render_depth
from geopurify.sim import make_room

W, H = 320, 240
K = np.array([[289.0, 0, 159.5], [0, 289.0, 119.5], [0, 0, 1]])


def openscene_mean_fusion(coords: np.ndarray, frames: list[Frame], feats: list[np.ndarray],
                          vis_thres: float = 0.05, cut_bound: int = 10) -> np.ndarray:
    """OpenScene's fusion loop, re-implemented in plain numpy (one frame at a time)."""
    n = coords.shape[0]
    sum_features = np.zeros((n, feats[0].shape[2]), np.float32)
    counter = np.zeros((n, 1), np.float32)
    coords_new = np.concatenate([coords, np.ones((n, 1))], 1).T
    for frame, feat_2d in zip(frames, feats):
        world_to_camera = np.linalg.inv(frame.cam_to_world)
        p = world_to_camera @ coords_new
        pi = np.zeros((3, n))
        pi[0] = p[0] * K[0, 0] / p[2] + K[0, 2]
        pi[1] = p[1] * K[1, 1] / p[2] + K[1, 2]
        pi = np.round(pi).astype(int)
        inside = (pi[0] >= cut_bound) * (pi[1] >= cut_bound) * (pi[0] < W - cut_bound) * (pi[1] < H - cut_bound)
        depth = frame.depth.numpy()
        occlusion = np.zeros(n, dtype=bool)
        occlusion[inside] = np.abs(depth[pi[1][inside], pi[0][inside]] - p[2][inside]) <= vis_thres * depth[
            pi[1][inside], pi[0][inside]]
        mask = inside & occlusion & (depth[np.clip(pi[1], 0, H - 1), np.clip(pi[0], 0, W - 1)] > 0)
        if mask.sum() == 0:
            continue
        feat_2d_3d = feat_2d[pi[1][mask], pi[0][mask]]
        sum_features[mask] += feat_2d_3d
        counter[mask] += 1
    return sum_features / np.maximum(counter, 1)


SEVEN_SCENES = Path(os.environ.get("GEOPURIFY_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) \
    / "sevenscenes_redkitchen"


def openscene_visibility(coords: np.ndarray, frame: Frame, tau: float = 0.05, border: int = 10) -> np.ndarray:
    """The visibility rule of OpenScene's mapper in plain float64 numpy: indices of the visible points."""
    W, H = frame.size
    T = np.linalg.inv(frame.cam_to_world)
    p = coords @ T[:3, :3].T + T[:3, 3]
    u = np.round(p[:, 0] * frame.intrinsics[0, 0] / p[:, 2] + frame.intrinsics[0, 2]).astype(np.int64)
    v = np.round(p[:, 1] * frame.intrinsics[1, 1] / p[:, 2] + frame.intrinsics[1, 2]).astype(np.int64)
    inside = (p[:, 2] > 0) & (u >= border) & (v >= border) & (u < W - border) & (v < H - border)
    d = np.zeros(len(coords))
    d[inside] = frame.depth.numpy()[v[inside], u[inside]]
    return np.nonzero(inside & (d > 0) & (np.abs(d - p[:, 2]) <= tau * d))[0]


def visibility_table(repeats: int = 5) -> None:
    if not SEVEN_SCENES.is_dir():
        print(f"\n(visibility on real frames skipped: {SEVEN_SCENES} not found)")
        return
    scan = load_scan(SEVEN_SCENES)
    frames = [scan.frames[i] for i in range(0, len(scan.frames), 5)]           # loaded once, outside the timing
    coords = scan.scene.coords
    col_major = coords.T.contiguous().T                                         # as lift_features passes them
    c64 = coords.numpy().astype(np.float64)
    runs = {"geopurify visible_points": lambda f: visible_points(col_major, f),
            "geopurify visible_points, row-major points": lambda f: visible_points(coords, f),
            "plain float64 numpy (OpenScene's mapper)": lambda f: openscene_visibility(c64, f)}
    best = {}
    for name, fn in runs.items():
        fn(frames[0])
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            for f in frames:
                fn(f)
            times.append((time.perf_counter() - t) / len(frames))
        best[name] = min(times)
    same = total = 0
    for f in frames:
        a, b = set(visible_points(col_major, f).index.tolist()), set(openscene_visibility(c64, f).tolist())
        same, total = same + len(a & b), total + len(a | b)
    base = best["plain float64 numpy (OpenScene's mapper)"]
    w, h = frames[0].size
    print_table(f"visibility on real 7-Scenes frames: {scan.scene.num_points:,} points, {len(frames)} frames {w}x{h}, "
                f"best of {repeats}; identical visibility {100 * same / total:.2f}%",
                ["method", "ms / frame", "speed-up vs numpy"],
                [(name, f"{1000 * sec:.2f}", f"{base / sec:.2f}x") for name, sec in best.items()])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=150_000)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--dim", type=int, default=512)
    args = ap.parse_args()
    room = make_room(seed=0, density=500.0)
    idx = torch.from_numpy(np.random.default_rng(0).choice(room.num_points, min(args.points, room.num_points),
                                                            replace=False))
    # densify: a second sample of the same surfaces if the room has fewer points than asked for
    scene = room if room.num_points <= args.points else room.select(idx)
    while scene.num_points < args.points:
        more = make_room(seed=0, density=500.0 * args.points / scene.num_points)
        scene = more.select(torch.arange(min(args.points, more.num_points)))
    rng = np.random.default_rng(1)
    spacing = point_spacing(scene.coords)
    frames = []
    for i in range(args.frames):
        eye = np.array([rng.uniform(1.0, 5.0), rng.uniform(1.0, 4.0), rng.uniform(1.2, 1.7)])
        T = look_at(eye, np.array([rng.uniform(0, 6), rng.uniform(0, 5), rng.uniform(0.3, 1.0)]))
        depth, _ = render_depth(scene.coords, T, K, (W, H), spacing)
        frames.append(Frame(f"{i}", torch.zeros(H, W, 3, dtype=torch.uint8), K, T, depth))
    g = torch.Generator().manual_seed(0)
    maps = [torch.randn(H, W, args.dim, generator=g) for _ in range(2)]
    text = torch.nn.functional.normalize(torch.randn(20, args.dim, generator=g), dim=1)
    enc = {f.name: DenseFeatures(maps[i % 2]) for i, f in enumerate(frames)}
    fr = Frames.from_frames(frames)
    rows = []
    for fusion in ("mean", "consensus"):
        t = time.perf_counter()
        lift_features(scene, fr, lambda f: enc[f.name], config=LiftConfig(fusion=fusion), text_embeddings=text,
                      progress=False)
        rows.append((f"geopurify {fusion}", time.perf_counter() - t))
    np_maps = [m.numpy() for m in maps]
    t = time.perf_counter()
    openscene_mean_fusion(scene.coords.numpy().astype(np.float64), frames, [np_maps[i % 2] for i in range(len(frames))])
    rows.append(("OpenScene-style numpy mean (re-implementation)", time.perf_counter() - t))
    base = rows[-1][1]
    print_table(f"{scene.num_points:,} points, {len(frames)} frames {W}x{H}, {args.dim}-d maps, "
                f"torch {torch.__version__}, {torch.get_num_threads()} threads",
                ["method", "seconds", "frames/s", "speed-up vs OpenScene-style"],
                [(name, f"{sec:.2f}", f"{len(frames) / sec:.1f}", f"{base / sec:.2f}x") for name, sec in rows])
    visibility_table()


if __name__ == "__main__":
    main()
