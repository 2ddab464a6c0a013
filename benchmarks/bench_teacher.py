"""The native Sonata teacher (released configuration, 108 M parameters, seeded random weights) on real scans.

No weights can be downloaded here, so the model has Sonata's released architecture
(``tests/fixtures/sonata_keys.json``: Pointcept's ``pretrain-sonata-v1m1-0-base`` backbone) with random
weights: time and memory are those of the real model, the features are not. Rows:

* ``geometric``: the default teacher on the same scan (the baseline of the ratio column);
* ``sonata``: ``get_teacher("sonata", path=<checkpoint in the released format>)(scene)``, end to end
  (Sonata preprocessing, encoder, 1088-d upcast, per point), weights already loaded.

Scans: a 50k-point ScanNet scan (``scannet50k/scene0000_00``) and a 150k-point one made of three
50k-point ScanNet scans side by side (4 m apart along x). Each row runs in its own process, so the
peak resident memory (``ru_maxrss``) is that row's. ``--device cuda`` runs the Sonata rows on a GPU
(fp16 autocast) and reports peak CUDA memory too.

Usage: ``python benchmarks/bench_teacher.py [--device cpu|cuda] [--sizes 50000 150000]``
(``GEOPURIFY_SHARED_DATA`` or ``../shared/data``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _table import print_table

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GEOPURIFY_SHARED_DATA", REPO.parent / "shared" / "data"))
SCANS = ("scene0000_00", "scene0000_01", "scene0000_02")


def released_checkpoint(path: Path) -> None:
    """Seeded random weights of the released architecture, saved as ``{config, state_dict}`` with
    spconv-layout convolution kernels (what a real ``sonata.pth`` holds)."""
    from geopurify.teachers.sonata.config import PTv3Config
    from geopurify.teachers.sonata.model import PointTransformerV3

    cfg = json.loads((REPO / "tests" / "fixtures" / "sonata_keys.json").read_text())["config"]
    torch.manual_seed(0)
    sd = PointTransformerV3(PTv3Config.from_dict(cfg)).state_dict()
    for k, v in sd.items():
        if k.endswith("cpe.0.weight"):                          # (27, in, out) -> (out, 3, 3, 3, in)
            sd[k] = v.reshape(3, 3, 3, v.shape[1], v.shape[2]).permute(4, 0, 1, 2, 3).contiguous()
    torch.save({"config": cfg, "state_dict": sd}, path)


def scene(n: int):
    from geopurify.geometry import estimate_normals
    from geopurify.io.scene import Scene

    parts = []
    for i, name in enumerate(SCANS[: max(1, n // 50000)]):
        v = np.load(DATA / "scannet50k" / f"{name}_vert.npy")
        v = v.copy()
        v[:, 0] += 4.0 * i + (v[:, 0].max() - v[:, 0].min()) * i
        parts.append(v)
    v = np.concatenate(parts)
    xyz = torch.from_numpy(v[:, :3]).float()
    return Scene(f"bench{n}", xyz, torch.from_numpy(v[:, 3:6] / 255.0).float(), estimate_normals(xyz))


def row(kind: str, n: int, ckpt: str, device: str) -> dict:
    from geopurify.teachers import get_teacher

    sc = scene(n)
    opts = {"path": ckpt, "device": device} if kind == "sonata" else {}
    teacher = get_teacher(kind, **opts)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    feats = teacher(sc)
    if device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    out = {"seconds": dt, "rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
           "dim": int(feats.shape[1]), "points": sc.num_points, "finite": bool(torch.isfinite(feats).all())}
    if kind == "sonata":
        from geopurify.teachers.sonata.features import prepare
        out["voxels"] = int(prepare(sc.coords, sc.colors, sc.normals).grid.shape[0])
        if device == "cuda":
            out["cuda_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[50000, 150000])
    ap.add_argument("--row", nargs=3, metavar=("KIND", "N", "CKPT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.row:
        kind, n, ckpt = args.row
        print(json.dumps(row(kind, int(n), ckpt, args.device)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "sonata_random.pth"
        released_checkpoint(ckpt)
        for n in args.sizes:
            res = {}
            for kind in ("geometric", "sonata"):
                p = subprocess.run([sys.executable, __file__, "--device", args.device, "--row", kind, str(n),
                                    str(ckpt)], capture_output=True, text=True, check=True)
                res[kind] = json.loads(p.stdout.strip().splitlines()[-1])
            s, g = res["sonata"], res["geometric"]
            rows.append([f"{s['points']:,}", f"{s['voxels']:,}", f"{g['seconds']:.1f}", f"{s['seconds']:.1f}",
                         f"{s['seconds'] / g['seconds']:.1f}x", f"{g['rss_gib']:.2f}", f"{s['rss_gib']:.2f}",
                         *([f"{s['cuda_gib']:.2f}"] if args.device == "cuda" else []), s["dim"], s["finite"]])
    header = ["points", "voxels (2 cm)", "geometric s", "sonata s", "sonata / geometric", "geometric peak RSS GiB",
              "sonata peak RSS GiB", *(["sonata peak CUDA GiB"] if args.device == "cuda" else []), "dim", "finite"]
    print_table(f"Native Sonata teacher, released config (108 M, random weights), {args.device}, "
                f"{torch.get_num_threads()} threads", header, rows)


if __name__ == "__main__":
    main()
