"""The purification benchmark, protocol "scannet-sim v1": how much does Geometry-Guided Pooling help?

Real ScanNet geometry (the 16 scans of ``../shared/data/scannet50k``), simulated 2D predictions
(:data:`geopurify.sim.mask_model.SCANNET_SIM_V1`: 40 rendered views per scan, masks with consistent and
view-dependent confusions, coarse boundaries, blobs, misses, named by class and embedded with MiniLM),
lifted with consensus fusion by the real lifting code. The student is trained label-free on scans of
rooms 0000-0003 (``--train-count`` chosen among them by the label-free selection) and evaluated on the
scans of rooms 0004-0006, which it never saw. Rows: direct projection, pooling with the student, with
the geometric teacher's features as embeddings (no student), with uniform weights (plain spatial kNN),
and with an instance oracle (ground-truth instance ids as embeddings: the ceiling of any affinity);
then the student with T in (1, 9, 19, 36) and K in (32, 96). mIoU/mAcc over the 19 ScanNet classes,
confusion matrices summed over the test scans; "gap closed" = (method - direct) / (oracle - direct).

Usage: ``python benchmarks/bench_purification.py [--epochs 20] [--train-count 4] [--cache DIR]``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from _protocol import load_protocol, protocol_arguments
from _table import print_table
from geopurify.evaluation import voxel_mode
from geopurify.evaluation.evaluate import evaluate
from geopurify.geometry import voxelize
from geopurify.labels import SCANNET20
from geopurify.lifting import FeatureSource
from geopurify.segment import PoolingConfig, Segmenter


class _Embedded:
    """A student stand-in that returns fixed per-voxel embeddings (teacher features, oracle ids) on the 2 cm
    grid, for lifted features of any size."""

    voxel_size = 0.02

    def __init__(self, per_point: torch.Tensor, feature_dim: int) -> None:
        self.per_point = per_point
        self.features = FeatureSource("unknown", feature_dim)

    def embed(self, grid, *_args) -> torch.Tensor:
        return grid.to_voxels(self.per_point)


def main() -> None:
    ap = protocol_arguments(__doc__.splitlines()[0])
    ap.add_argument("--direct-only", action="store_true", help="only report direct projection (protocol check)")
    a = ap.parse_args()
    data = load_protocol(Path(a.cache))
    scenes, lifted, names, text, t_lift = data.scenes, data.lifted, data.names, data.text, data.lift_seconds
    seg = Segmenter(text_encoder=text)
    if a.direct_only:
        ev = evaluate([(scenes[n], lifted[n]) for n in names], SCANNET20, segmenter=seg, methods=("direct",))
        r = ev.scores("direct")
        print_table(f"scannet-sim v1, direct projection over all {len(names)} scans (lifting {t_lift:.0f} s)",
                    ["mIoU", "mAcc", "f-mIoU"], [[f"{100 * r.miou:.1f}", f"{100 * r.macc:.1f}", f"{100 * r.fg_miou:.1f}"]])
        print("\n" + ev.table())
        return

    train, test = data.split(a.train_count)
    tfeat = data.teacher_features
    t0 = time.perf_counter()
    student = data.train(train, a).student
    t_train = time.perf_counter() - t0

    def run(method: str, k: int = 96, steps: int = 19):
        s = Segmenter(text_encoder=text, pooling=PoolingConfig(k=k, steps=steps))
        mats = None
        for n in test:
            sc = scenes[n]
            if method == "student":
                emb_src = student
            elif method == "teacher":
                emb_src = _Embedded(tfeat[n], lifted[n].dim)
            elif method == "oracle":
                grid = voxelize(sc.coords, 0.02)
                inst = voxel_mode(sc.instances, grid.inverse, grid.num_voxels)
                inst = torch.where(inst >= 0, inst, int(inst.max()) + 1 + torch.arange(len(inst)))
                _, ids = torch.unique(inst, return_inverse=True)
                emb_src = _Embedded(torch.nn.functional.one_hot(ids[grid.inverse]).float(), lifted[n].dim)
            else:
                emb_src = None
            ev = evaluate([(sc, lifted[n])], SCANNET20, segmenter=s, student=emb_src,  # type: ignore[arg-type]
                          methods=("direct", "purified"))
            if mats is None:
                mats = ev
            else:
                for m in ev.matrices:
                    for sub in ev.matrices[m]:
                        mats.matrices[m][sub].merge(ev.matrices[m][sub])
        return mats

    t0 = time.perf_counter()
    results = {"student": run("student"), "teacher": run("teacher"), "uniform": run("uniform"),
               "oracle": run("oracle")}
    direct = results["student"].scores("direct")
    oracle = results["oracle"].scores("purified")
    rows = [["direct projection", f"{100 * direct.miou:.1f}", f"{100 * direct.macc:.1f}",
             f"{100 * direct.fg_miou:.1f}", "0%"]]

    def row(label: str, r) -> list[str]:
        gap = (r.miou - direct.miou) / max(1e-9, oracle.miou - direct.miou)
        return [label, f"{100 * r.miou:.1f}", f"{100 * r.macc:.1f}", f"{100 * r.fg_miou:.1f}", f"{100 * gap:.0f}%"]
    labels = {"student": "pooling, student affinities (GeoPurify)", "teacher": "pooling, teacher features (no student)",
              "uniform": "pooling, uniform spatial kNN", "oracle": "pooling, instance oracle (ceiling)"}
    rows += [row(labels[m], results[m].scores("purified")) for m in ("student", "teacher", "uniform", "oracle")]
    for steps in (1, 9, 36):
        rows.append(row(f"student, T={steps}", run("student", steps=steps).scores("purified")))
    rows.append(row("student, K=32", run("student", k=32).scores("purified")))
    t_eval = time.perf_counter() - t0
    print_table(f"scannet-sim v1: trained on {', '.join(train)} ({a.epochs} epochs, label-free, semantic weight "
                f"{a.semantic_weight:g}); evaluated on "
                f"{len(test)} unseen scans ({', '.join(test)}); K=96, T=19 unless stated",
                ["method", "mIoU", "mAcc", "f-mIoU", "gap closed"], rows)
    print(f"\nlifting {t_lift:.0f} s (cached after the first run), training {t_train:.0f} s, evaluation {t_eval:.0f} s")
    print("\nPer-class IoU, direct vs student pooling:\n")
    print(results["student"].table())


if __name__ == "__main__":
    main()
