"""Training throughput of the student: iterations/s, anchors/s, peak memory (CPU, or ``--device cuda``).

One real 50k-point ScanNet scene from ``../shared/data/scannet50k`` (or a generated room of the same
size when the data is absent) with 512-d lifted features, the geometric teacher, 4096 anchors.
Each configuration runs in its own process so that peak memory (max RSS) is its own.
Rows: the ``cpu`` preset (a U-Net with 3 coarse levels; timed over several iterations after a warm-up
of about a dozen draws that fills most of the pair table), the same without its levels (``--levels 0``,
the plain network of the ``cpu`` preset before the levels were added), the ``upstream`` size (one
iteration), and the pair sampling alone (recomputed every iteration, as the official code does, vs the
memoised pair table).

On CUDA, iterations are synchronised before timing and peak memory is the GPU's (``max_memory_allocated``).

Usage: ``python benchmarks/bench_training.py [--iters 5] [--skip-upstream] [--levels 0] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from _protocol import DATA
from _table import print_table

SHARED = DATA / "scene0000_00"


def load_item(dim: int):
    from geopurify.io import load_scan
    from geopurify.sim import make_room, noisy_class_features
    from geopurify.student import DistillScene
    from geopurify.teachers import get_teacher, teacher_features

    if SHARED.parent.is_dir():
        scene = load_scan(SHARED).scene
    else:
        scene = make_room(seed=0, density=190)
    feats, _ = noisy_class_features(scene, dim, seed=0)
    return DistillScene(scene, feats, teacher_features(scene, get_teacher("geometric")))


def run_one(preset: str, iters: int, dim: int, device: str, levels: int | None) -> dict:
    from geopurify.student import TrainConfig
    from geopurify.student.data import SceneSampler
    from geopurify.student.distill import info_nce, pairs_for_anchors
    from geopurify.student.network import build_student, student_config
    from geopurify.student.train import _optimizer

    item = load_item(dim)
    cfg = TrainConfig()
    dev = torch.device(device)
    overrides = {} if levels is None else {"levels": levels}
    student = build_student(student_config(preset, dim, **overrides), seed=0).to(dev)
    opt = _optimizer(student, cfg)
    smp = SceneSampler(item, cfg, dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    pairs_for_anchors(smp.table.teacher, smp.table.centers, torch.randperm(smp.table.num_voxels)[:4096].to(dev),
                      cfg.pairs)
    sync()
    sampling = time.perf_counter() - t0
    for i in range(smp.table.num_voxels // 4096 + 1 if preset == "cpu" or dev.type == "cuda" else 0):
        smp.batch(student, torch.Generator().manual_seed(100 + i))   # fill the pair table (warm-up)
    t0 = time.perf_counter()
    smp.table.sample(torch.Generator().manual_seed(999))
    lookup = time.perf_counter() - t0
    times = []
    for i in range(iters + (2 if dev.type == "cuda" else 0)):      # on CUDA, 2 untimed warm-up iterations
        sync()
        t = time.perf_counter()
        x, pyramid, pairs = smp.batch(student, torch.Generator().manual_seed(i))
        loss = info_nce(student(x, pyramid), pairs)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync()
        times.append(time.perf_counter() - t)
    times = times[len(times) - iters:]
    s = sum(times) / len(times)
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if dev.type == "cuda" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    return {"preset": preset + ("" if levels is None else f" --levels {levels}"),
            "params": sum(q.numel() for q in student.parameters()), "voxels": smp.grid.num_voxels,
            "points": item.scene.num_points, "s_per_iter": s, "anchors_per_s": len(pairs.anchors) / s,
            "sampling_s": sampling, "lookup_s": lookup,
            "peak_gb": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--skip-upstream", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--levels", type=int, nargs="*", default=[0], help="also time the cpu preset with these numbers "
                    "of coarse levels (default 0: the plain network; the preset has 3)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-levels", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        iters = a.iters if a.child == "cpu" or a.device != "cpu" else 1
        print(json.dumps(run_one(a.child, iters, a.dim, a.device, a.child_levels)))
        return
    rows = []
    runs = [("cpu", None), *(("cpu", n) for n in a.levels), *([] if a.skip_upstream else [("upstream", None)])]
    for preset, levels in runs:
        out = subprocess.run([sys.executable, __file__, "--child", preset, "--iters", str(a.iters), "--dim", str(a.dim),
                              "--device", a.device, *([] if levels is None else ["--child-levels", str(levels)])],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append([r["preset"], f"{r['params'] / 1e6:.2f} M", f"{r['points']:,} / {r['voxels']:,}",
                     f"{r['s_per_iter']:.2f}", f"{1 / r['s_per_iter']:.2f}", f"{r['anchors_per_s']:.0f}",
                     f"{r['peak_gb']:.2f}"])
        if r["preset"] == "cpu":
            sampling, lookup = r["sampling_s"], r["lookup_s"]
    where = torch.cuda.get_device_name() if a.device.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"
    print_table(f"Student training on {where}, {a.dim}-d lifted features, "
                "4096 anchors, whole-scene context",
                ["preset", "parameters", "points / voxels", "s / iteration", "iterations / s", "anchors / s",
                 "peak GPU memory GB" if a.device.startswith("cuda") else "peak RSS GB"], rows)
    print_table("Pair sampling for one iteration (4096 anchors)", ["method", "seconds"],
                [["recomputed every iteration (as upstream)", f"{sampling:.2f}"],
                 ["memoised pair table after 13 draws (anchors never drawn before are still computed)", f"{lookup:.3f}"]])


if __name__ == "__main__":
    main()
