"""Affinity purity on unseen scans: does the student's affinity beat its teacher's? (issue #5)

Protocol scannet-sim v1 (``_protocol.py``): the student is trained label-free on scans of rooms
0000-0003 and evaluated on the 6 scans of rooms 0004-0006. For every voxel of a test scan, purity is the
share of its pooling weight ``softmax(s * cos)`` over its K=96 nearest voxels that stays inside its own
ground-truth instance (:func:`geopurify.metrics.affinity_purity`; instance ids are used here only).
Rows: uniform weights (plain kNN), the geometric teacher's features, the student's input features
(lifted semantics, colour, normal), the features that choose the pairs when ``--semantic-weight`` > 0,
and the student. The first table uses pooling's sharpness s = 20; the second gives the mean over scans
for s in (10, 20, 40, 80): how well each embedding *ranks* neighbours (large s) versus how far apart it
puts them (small s).

Usage: ``python benchmarks/bench_affinity.py [--epochs 20] [--train-count 4] [--semantic-weight 0]
[--teacher sonata --teacher-path sonata.pth]``
(the student is the one ``bench_purification.py`` trains with the same settings; trained once, cached).
"""

from __future__ import annotations

import time
from pathlib import Path

from _protocol import load_protocol, protocol_arguments, teacher_of
from _table import print_table
from geopurify.evaluation import affinity_purity, voxel_mode
from geopurify.geometry import voxelize
from geopurify.segment.pooling import knn_graph
from geopurify.student.data import DistillScene, pair_features
from geopurify.student.network import student_inputs

SHARPNESS = (10.0, 20.0, 40.0, 80.0)


def main() -> None:
    ap = protocol_arguments(__doc__.splitlines()[0])
    a = ap.parse_args()
    data = load_protocol(Path(a.cache))
    data.teacher = teacher_of(a)
    train, test = data.split(a.train_count)
    tfeat = data.teacher_features
    t0 = time.perf_counter()
    student = data.train(train, a).student
    t_train = time.perf_counter() - t0
    methods = ["uniform", "teacher", "student input", *(["pair features"] if a.semantic_weight > 0 else []), "student"]
    purity = {m: {n: {} for n in test} for m in methods}
    t0 = time.perf_counter()
    for n in test:
        sc, lf = data.scenes[n], data.lifted[n]
        grid = voxelize(sc.coords, 0.02)
        inst = voxel_mode(sc.instances, grid.inverse, grid.num_voxels)
        nb = knn_graph(grid.centers, 96)
        emb = {"uniform": None, "teacher": grid.to_voxels(tfeat[n]),
               "student input": student_inputs(grid, lf.features, sc.colors, sc.normals),
               "pair features": grid.to_voxels(pair_features(DistillScene(sc, lf.features, tfeat[n]),
                                                             a.semantic_weight)),
               "student": student.embed(grid, lf.features, sc.colors, sc.normals)}
        for m in methods:
            for s in SHARPNESS if m != "uniform" else (20.0,):
                purity[m][n][s] = affinity_purity(emb[m], grid.centers, inst, sharpen=s, neighbors=nb)
    t_eval = time.perf_counter() - t0

    def mean(m: str, s: float) -> float:
        return sum(purity[m][n][s] for n in test) / len(test)
    title = (f"affinity purity at s=20 on {len(test)} unseen scans; student trained on {', '.join(train)} "
             f"({a.epochs} epochs, label-free, semantic weight {a.semantic_weight:g}); K=96")
    print_table(title, ["embedding", *[n.replace("scene", "") for n in test], "mean", "vs teacher"],
                [[m, *[f"{purity[m][n][20.0]:.4f}" for n in test], f"{mean(m, 20.0):.4f}",
                  f"{mean(m, 20.0) - mean('teacher', 20.0):+.4f}"] for m in methods])
    print_table("mean purity over the unseen scans by sharpness s (larger s: ranking of neighbours only)",
                ["embedding", *[f"s={s:g}" for s in SHARPNESS]],
                [[m, *[f"{mean(m, s):.4f}" for s in SHARPNESS]] for m in methods if m != "uniform"])
    print(f"\ntraining {t_train:.0f} s (0 when cached), evaluation {t_eval:.0f} s")


if __name__ == "__main__":
    main()
