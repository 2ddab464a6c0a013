"""Free-text queries: what a query costs once a scan is prepared (pooled features cached per scan).

A generated room (``--density``, default 800 points/m^2: about 110k points), 384-d lifted
features made from its labels (:func:`geopurify.sim.noisy_class_features`), uniform pooling weights (K=96,
T=19), MiniLM text embeddings. Rows, all measured in this run:

(a) ``geopurify query`` (:func:`geopurify.workflows.query_scans`) with 1 query and with 20 queries, end to end
    per scan: set the scan (voxels, kNN graph), one pooling, text embedding, and the files (.npy, .ply, .json);
(b) the viewer's case: 20 more free-text queries on the prepared scan (:meth:`Segmenter.heatmap`, pooling
    cached), per query;
(c) the baseline without the cache: every query prepares and pools the scan again.

Usage: ``python benchmarks/bench_query.py [--density 800]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from _table import print_table
from geopurify.encoders import get_text_encoder
from geopurify.io.ply import write_ply
from geopurify.lifting import LiftedFeatures
from geopurify.segment import Segmenter
from geopurify.sim import make_room, noisy_class_features
from geopurify.workflows import query_scans

QUERIES = ["a place to sleep", "something to sit on", "a window", "where books are", "the floor", "a lamp",
           "a door", "a table to eat at", "a soft couch", "curtains", "a picture on the wall", "a desk to work at",
           "a cupboard", "the ceiling", "a bookshelf", "a chair", "a bed with pillows", "somewhere to put a cup",
           "a radiator", "a wall"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--density", type=float, default=800.0)
    args = ap.parse_args()
    room = make_room(seed=0, density=args.density)
    feats, _ = noisy_class_features(room, 384, seed=0)
    n = room.num_points
    text = get_text_encoder("minilm")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_ply(tmp / "room.ply", room.coords.numpy(), rgb=room.colors.numpy(), normals=room.normals.numpy())
        LiftedFeatures(feats, torch.ones(n, dtype=torch.bool), torch.ones(n, dtype=torch.int32), "sim").save(
            tmp / "room.npz")
        seg = Segmenter(text_encoder=text)
        seg.embed_texts(["warm-up"])
        rows, t = [], {}
        for run, q in enumerate((1, 20, 1)):                     # 1 query before and after: the faster counts
            t0 = time.perf_counter()
            query_scans([str(tmp / "room.ply")], QUERIES[:q], seg, tmp / f"out{run}", features=tmp / "room.npz",
                        progress=False)
            t[q] = min(t.get(q, float("inf")), time.perf_counter() - t0)
        rows.append(["(a) geopurify query, 1 query", f"{t[1]:.2f}", f"{t[1]:.2f}", "1.00"])
        rows.append(["(a) geopurify query, 20 queries", f"{t[20]:.2f}", f"{t[20] / 20:.3f}", f"{t[20] / t[1]:.2f}"])
        t0 = time.perf_counter()
        for qtext in QUERIES:
            seg.heatmap(qtext + " again")
        cached = (time.perf_counter() - t0) / len(QUERIES)
        rows.append(["(b) one more query, pooling cached (viewer)", f"{cached * len(QUERIES):.2f}", f"{cached:.3f}",
                     f"{cached * len(QUERIES) / t[1]:.2f}"])
        lifted = LiftedFeatures.load(tmp / "room.npz")
        t0 = time.perf_counter()
        for qtext in QUERIES[:3]:
            s2 = Segmenter(text_encoder=text)
            s2.set_scene(room, lifted)
            s2.heatmap(qtext)
        per = (time.perf_counter() - t0) / 3
        rows.append(["(c) baseline: prepare + pool again per query (3 measured)", f"{per * 20:.2f} (x20)",
                     f"{per:.3f}", f"{per * 20 / t[1]:.2f}"])
    print_table(f"Free-text queries on a generated room: {n:,} points, {seg.grid.num_voxels:,} voxels at 2 cm, 384-d "
                f"features, K={seg.pooling.k}, T={seg.pooling.steps} ({torch.get_num_threads()} threads)",
                ["what", "seconds (20 queries)", "seconds per query", "vs 1 query (a)"], rows)


if __name__ == "__main__":
    main()
