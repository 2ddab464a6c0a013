"""Reading a 1M-point binary PLY and voxelising it at 2 cm.

Usage: ``python benchmarks/bench_io.py [--points 1000000] [--repeats 3]``. Prints a Markdown table
of the best wall time over the repeats for each step. Target (issue #2): read + voxelise < 2 s.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from _table import best_of, print_table
from geopurify import load_scan, voxelize
from geopurify.geometry import estimate_normals
from geopurify.io.ply import read_ply, write_ply


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = args.points
    # points on the surfaces of a 6 x 5 x 2.7 m room, like a dense indoor scan
    xyz = rng.uniform([0, 0, 0], [6, 5, 2.7], size=(n, 3))
    face = rng.integers(0, 5, n)
    xyz[face == 0, 2] = 0
    xyz[face == 1, 0] = 0
    xyz[face == 2, 0] = 6
    xyz[face == 3, 1] = 0
    xyz[face == 4, 1] = 5
    normals = np.zeros((n, 3), np.float32)
    normals[np.arange(n), np.array([2, 0, 0, 1, 1])[face]] = 1
    rgb = rng.integers(0, 256, (n, 3)).astype(np.uint8)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cloud.ply"
        write_ply(path, xyz, rgb=rgb, normals=normals, scalars={"label": rng.integers(0, 41, n).astype(np.uint8)})
        size_mb = path.stat().st_size / 1e6
        t_raw, _ = best_of(lambda: read_ply(path), args.repeats)
        t_scan, scan = best_of(lambda: load_scan(path), args.repeats)
        t_vox, grid = best_of(lambda: voxelize(scan.scene.coords, 0.02), args.repeats)
        rows += [
            ("read_ply (plyfile parse)", t_raw),
            ("load_scan (parse + validate + label map)", t_scan),
            ("voxelize 2 cm (Morton-sorted)", t_vox),
            ("**load_scan + voxelize**", t_scan + t_vox),
        ]
        coords = scan.scene.coords
        t_norm, _ = best_of(lambda: estimate_normals(coords, k=16), 1)
        rows.append(("estimate_normals k=16 (only when the PLY has none)", t_norm))
    print_table(f"{n:,} points, binary PLY {size_mb:.0f} MB, {grid.num_voxels:,} voxels at 2 cm, "
                f"torch {torch.__version__}, {torch.get_num_threads()} threads",
                ["step", "seconds"], [(name, f"{t:.3f}") for name, t in rows])


if __name__ == "__main__":
    main()
