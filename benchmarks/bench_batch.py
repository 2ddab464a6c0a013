"""Throughput of ``geopurify run`` (lift + segment + evaluate) over 8 generated scans: the local executor,
and the Ray executor with 1 and 2 workers (one CPU and one torch thread each) on a local Ray cluster.

Scans: generated furnished rooms (``tests/scan_trees.write_batch_scans``: ~``--density`` points per m^2 of
surface, ``--views`` rendered frames, error-free masks embedded by MiniLM), the ``masks`` encoder, no student
(uniform pooling weights). Every run writes into a fresh folder and includes loading the models (once per
worker); the Ray cluster's start is timed separately and left out. Rows: seconds, scans/min, frames/s; the
2-worker ratio is against the 1-worker Ray run, the Ray overhead is the 1-worker Ray run against local with
one thread (the same work in one process). ``--device cuda`` runs the local executor on the GPU (scans/min
with 1 GPU).

Usage: ``python benchmarks/bench_batch.py [--scans 8] [--views 8] [--density 90] [--device cpu] [--no-ray]``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from _table import print_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from geopurify.batch import RunConfig, run_batch  # noqa: E402
from geopurify.workflows import EncoderSpec  # noqa: E402
from scan_trees import write_batch_scans  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scans", type=int, default=8)
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--density", type=float, default=90.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    t0 = time.perf_counter()
    write_batch_scans(root, args.scans, views=args.views, density=args.density)
    print(f"{args.scans} scans ({args.views} frames each) written in {time.perf_counter() - t0:.1f} s under {root}")
    config = RunConfig(stages=("lift", "segment", "evaluate"), encoder=EncoderSpec(
        "masks", str(root / "masks" / "{name}"), text_encoder="minilm"), vocabulary=("chair", "table", "sofa"),
        device=args.device)
    scans = [str(root / "scans" / "scene*")]
    rows, secs = [], {}

    def timed(name: str, executor: str, options: dict) -> None:
        res = run_batch(scans, root / f"out_{len(rows)}", config, executor=executor, executor_options=options,
                        progress=False)
        assert len(res.done) == args.scans and not res.failed, res.table()
        s = res.wall_seconds
        secs[name] = s
        rows.append([name, f"{s:.1f}", f"{60 * args.scans / s:.1f}", f"{res.frames / s:.1f}",
                     " / ".join(f"{st} {sum(v) / len(v):.2f}" for st, v in res.seconds.items())])

    timed(f"local, 1 thread ({args.device})", "local", {"threads": 1})
    timed(f"local, default threads ({args.device})", "local", {})
    if not args.no_ray:
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        start = time.perf_counter() - t0
        timed("ray, 1 worker", "ray", {"workers": 1})
        timed("ray, 2 workers", "ray", {"workers": 2})
        ray.shutdown()
    print_table(f"`geopurify run` over {args.scans} scans (lift + segment + evaluate)",
                ["executor", "seconds", "scans/min", "frames/s", "mean s per scan: stage"], rows)
    if not args.no_ray:
        ray1, ray2, local1 = secs["ray, 1 worker"], secs["ray, 2 workers"], secs[f"local, 1 thread ({args.device})"]
        print(f"\n2 workers vs 1 (Ray): {ray1 / ray2:.2f}x throughput; Ray overhead vs local (1 thread each): "
              f"{ray1 - local1:+.1f} s ({100 * (ray1 / local1 - 1):+.0f}%); starting the local Ray cluster: {start:.1f} s")


if __name__ == "__main__":
    main()
