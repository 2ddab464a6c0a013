"""Reading a 300-frame RGB-D capture and fusing its cloud: a nerfstudio ``transforms.json`` capture vs the same
frames as a native 7-Scenes folder (the baseline), and where the time goes.

Usage: ``python benchmarks/bench_captures.py [--frames 300] [--repeats 2]``. The capture repeats the 100 real
7-Scenes frames of ``../shared/data/sevenscenes_redkitchen`` (symbolic links, 640x480 JPEG + 16-bit PNG depth).
Prints a Markdown table of the best wall time over the repeats for each step.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from _table import best_of, print_table
from geopurify import load_scan
from geopurify.camera import OPENGL_TO_OPENCV
from geopurify.geometry import estimate_normals
from geopurify.io.layouts import fuse_depth_frames, read_nerfstudio_frames, read_sevenscenes_frames
from geopurify.io.text import read_matrix

SHARED = Path(os.environ.get("GEOPURIFY_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def write_captures(src: Path, root: Path, n: int) -> tuple[Path, Path]:
    """``n`` frames (the source's, repeated) as a nerfstudio capture and as a 7-Scenes folder."""
    stems = sorted(p.name[: -len(".pose.txt")] for p in src.glob("frame-*.pose.txt"))
    K = read_matrix(src / "camera-intrinsics.txt")
    ns, seven = root / "ns", root / "seven"
    for d in (ns / "images", ns / "depth", seven):
        d.mkdir(parents=True)
    (seven / "camera-intrinsics.txt").symlink_to(src / "camera-intrinsics.txt")
    frames = []
    for k in range(n):
        s = stems[k % len(stems)]
        for kind in ("color.jpg", "depth.png", "pose.txt"):
            (seven / f"frame-{k:06d}.{kind}").symlink_to(src / f"{s}.{kind}")
        (ns / "images" / f"{k:05d}.jpg").symlink_to(src / f"{s}.color.jpg")
        (ns / "depth" / f"{k:05d}.png").symlink_to(src / f"{s}.depth.png")
        pose = read_matrix(src / f"{s}.pose.txt") @ OPENGL_TO_OPENCV      # OpenCV -> OpenGL (its own inverse)
        frames.append({"file_path": f"images/{k:05d}.jpg", "depth_file_path": f"depth/{k:05d}.png",
                       "transform_matrix": pose.tolist()})
    (ns / "transforms.json").write_text(json.dumps({"fl_x": K[0, 0], "fl_y": K[1, 1], "cx": K[0, 2], "cy": K[1, 2],
                                                    "w": 640, "h": 480, "frames": frames}))
    return ns, seven


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    src = SHARED / "sevenscenes_redkitchen"
    if not src.is_dir():
        raise SystemExit(f"needs the real 7-Scenes frames at {src} (set GEOPURIFY_SHARED_DATA)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ns, seven = write_captures(src, Path(tmp), args.frames)
        t_specs, frames = best_of(lambda: read_nerfstudio_frames(ns), args.repeats)
        cloud = frames.subsample(10)
        t_decode, _ = best_of(lambda: [f for f in cloud], args.repeats)
        t_fuse, (xyz, _) = best_of(lambda: fuse_depth_frames(cloud), args.repeats)
        t_norm, _ = best_of(lambda: estimate_normals(xyz, k=16, viewpoint=cloud.poses[:, :3, 3].float()), args.repeats)
        t_ns, scan = best_of(lambda: load_scan(ns), args.repeats)
        t_7s, _ = best_of(lambda: load_scan(seven), args.repeats)
        t_7specs, _ = best_of(lambda: read_sevenscenes_frames(seven), args.repeats)
        t_all, (xyz_all, _) = best_of(lambda: fuse_depth_frames(frames), 1)
        n_cloud = len(cloud)
        rows += [
            ("parse transforms.json + check 300 poses (no pixels read)", t_specs, ""),
            (f"decode {n_cloud} colour JPEG + depth PNG (every 10th frame)", t_decode, "part of fuse"),
            (f"back-project + voxel-reduce those {n_cloud} (fuse minus decode)", t_fuse - t_decode, "part of fuse"),
            (f"fuse_depth_frames, {n_cloud} frames -> {len(xyz):,} points", t_fuse, ""),
            ("estimate normals (k=16, oriented to the cameras)", t_norm, ""),
            ("**load_scan(transforms.json)** (all of the above)", t_ns, f"{t_ns / t_7s:.2f}x the baseline"),
            ("baseline: load_scan(7-Scenes folder), same frames", t_7s, "1.00x"),
            ("baseline part: 7-Scenes frame list (reads 300 pose files)", t_7specs, ""),
            (f"fuse all {len(frames)} frames -> {len(xyz_all):,} points", t_all, "1 run"),
        ]
    print_table(f"{args.frames}-frame capture (7-Scenes redkitchen frames, 640x480), fused at 2 cm, pixel step 2, "
                f"torch {torch.__version__}, {torch.get_num_threads()} threads, numpy {np.__version__}",
                ["step", "seconds", "note"], [(name, f"{t:.3f}", note) for name, t, note in rows])


if __name__ == "__main__":
    main()
