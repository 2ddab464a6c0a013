"""Geometry-Guided Pooling: this implementation vs a faithful re-implementation of the official one.

A generated room voxelised at 2 cm (about 200k voxels), K=96, sharpen 20, T=19; 512-d lifted features
made from the room's labels (class prototypes + noise + flips, :func:`geopurify.sim.noisy_class_features`),
the 20 ScanNet classes' prototypes as text embeddings, and 128-d stand-in student embeddings (a random
vector per instance plus noise). Rows:

(a) this implementation, 512-d features: KD-tree kNN on Morton-ordered voxels, CSR products;
(b) the same graph, pooling the (M, 20) logits instead (same argmax as (a), proven in the tests);
(c) the official algorithm re-implemented faithfully: exact brute-force kNN (97 nearest, first dropped),
    all 518 channels (512 semantic + colour + normal) propagated with a torch sparse COO matrix.

Per-voxel label agreement between (a), (b) and (c) is reported. (c) and (a) choose different
neighbours where distances tie at the 96th neighbour (common on an integer grid), so the table also
runs (b) on (c)'s own neighbour lists: with the same graph the labels must be identical. The peak
memory of (b) on a 1M-point scene (``--million``) is measured in its own process.

Usage: ``python benchmarks/bench_pooling.py [--density 2500] [--million]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings

import torch

from _table import print_table
from geopurify.geometry import voxelize
from geopurify.segment.pooling import affinity_matrix, affinity_weights, knn_graph, propagate
from geopurify.sim import class_prototypes, make_room, noisy_class_features


def official_pooling(coords: torch.Tensor, x0: torch.Tensor, emb: torch.Tensor, k: int = 96, steps: int = 19,
                     sharpen: float = 20.0, chunk: int = 2048) -> tuple[torch.Tensor, float, torch.Tensor]:
    """Spec section 6, steps 4-7: exact kNN (FAISS IndexFlatL2 semantics), COO matrix, A^19 X0."""
    t0 = time.perf_counter()
    m = coords.shape[0]
    nbrs = torch.empty(m, k, dtype=torch.int64)
    for s in range(0, m, chunk):
        d = torch.cdist(coords[s:s + chunk], coords)
        nbrs[s:s + chunk] = d.topk(k + 1, largest=False).indices[:, 1:]
    t_knn = time.perf_counter() - t0
    e = torch.nn.functional.normalize(emb, dim=1)
    a = (e[:, None, :] * e[nbrs]).sum(-1)
    w = torch.softmax(sharpen * a, dim=1)
    rows = torch.arange(m)[:, None].expand(m, k)
    mat = torch.sparse_coo_tensor(torch.stack([rows.reshape(-1), nbrs.reshape(-1)]), w.reshape(-1), (m, m))
    f = torch.sparse.mm(mat, x0)
    for _ in range(steps - 1):
        f = torch.sparse.mm(mat, f)
    return f, t_knn, nbrs


def ours(centers: torch.Tensor, x0: torch.Tensor, emb: torch.Tensor, text: torch.Tensor | None,
         graph: torch.Tensor | None = None):
    t0 = time.perf_counter()
    nb = knn_graph(centers, 96) if graph is None else graph
    t_knn = time.perf_counter() - t0
    mat = affinity_matrix(nb, affinity_weights(emb, nb, 20.0))
    x = x0 if text is None else x0 @ text.T
    out = propagate(mat, x, 19)
    return out, t_knn, time.perf_counter() - t0


def million_child() -> None:
    room = make_room(seed=0, density=9000)
    idx = torch.randperm(room.num_points, generator=torch.Generator().manual_seed(0))[:1_000_000]
    coords = room.coords[idx]
    t0 = time.perf_counter()
    grid = voxelize(coords, 0.02)
    feats = torch.nn.functional.normalize(torch.randn(len(coords), 512), dim=1)
    x0 = grid.to_voxels(feats)
    del feats
    emb = torch.randn(grid.num_voxels, 128)
    text = torch.nn.functional.normalize(torch.randn(20, 512), dim=1)
    logits, _, _ = ours(grid.centers, x0, emb, text)
    labels = grid.to_points(logits).argmax(1)
    print(json.dumps({"points": len(coords), "voxels": grid.num_voxels, "seconds": time.perf_counter() - t0,
                      "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
                      "labels": int(labels.numel())}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--density", type=float, default=2500.0, help="points per m2 of the generated room")
    ap.add_argument("--million", action="store_true", help="also measure peak memory on 1M points")
    ap.add_argument("--skip-official", action="store_true")
    ap.add_argument("--child-million", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child_million:
        million_child()
        return
    million = None
    if a.million:   # first, while this process is small: Linux carries a parent's peak RSS into the child
        out = subprocess.run([sys.executable, __file__, "--child-million"], capture_output=True, text=True, check=True)
        million = json.loads(out.stdout.strip().splitlines()[-1])
    torch.manual_seed(0)
    room = make_room(seed=0, density=a.density)
    grid = voxelize(room.coords, 0.02)
    m = grid.num_voxels
    feats, _ = noisy_class_features(room, 512, seed=0)
    x0 = grid.to_voxels(feats)
    geo = grid.to_voxels(torch.cat([room.colors, room.normals], 1))
    inst_vec = torch.randn(int(room.instances.max()) + 2, 128, generator=torch.Generator().manual_seed(1))
    emb = grid.to_voxels(inst_vec[room.instances + 1] + 0.5 * torch.randn(room.num_points, 128))
    text = class_prototypes(21, 512)[:20]

    warnings.filterwarnings("ignore", message="Sparse invariant checks")
    fa, knn_a, ta = ours(grid.centers, x0, emb, None)
    fb, knn_b, tb = ours(grid.centers, x0, emb, text)
    la, lb = (fa @ text.T).argmax(1), fb.argmax(1)
    rows = [["(a) ours, 512-d features", f"{knn_a:.2f}", f"{ta:.2f}", "1.0x", "-"],
            ["(b) ours, 20 logits", f"{knn_b:.2f}", f"{tb:.2f}", "", f"{(la == lb).float().mean() * 100:.2f}% vs (a)"]]
    if not a.skip_official:
        t0 = time.perf_counter()
        fc, knn_c, graph_c = official_pooling(grid.coords.float(), torch.cat([x0, geo], 1), emb)
        tc = time.perf_counter() - t0
        lc = (fc[:, :512] @ text.T).argmax(1)
        rows.append(["(c) official re-implementation (brute-force kNN, 518-d, COO)", f"{knn_c:.2f}", f"{tc:.2f}",
                     "", f"{(lc == la).float().mean() * 100:.2f}% vs (a), {(lc == lb).float().mean() * 100:.2f}% vs (b)"])
        fd, _, td = ours(grid.centers, x0, emb, text, graph=graph_c)
        rows.append(["(b) on (c)'s neighbour lists", "-", f"{td:.2f}", "",
                     f"{(fd.argmax(1) == lc).float().mean() * 100:.2f}% vs (c)"])
        rows[0][3] = f"{tc / ta:.1f}x"
        rows[1][3] = f"{tc / tb:.1f}x"
    else:
        rows[0][3] = rows[1][3] = "n/a"
    print_table(f"Geometry-Guided Pooling, {m:,} voxels ({room.num_points:,} points), K=96, T=19, "
                f"{torch.get_num_threads()} threads", ["method", "kNN s", "total s", "speed-up of (c) / this",
                                                       "voxel label agreement"], rows)
    if million is not None:
        r = million
        print_table("1M points, logits path (voxelise + kNN + affinities + 19 products + labels)",
                    ["points", "voxels", "seconds", "peak RSS GB"],
                    [[f"{r['points']:,}", f"{r['voxels']:,}", f"{r['seconds']:.1f}", f"{r['peak_gb']:.2f}"]])


if __name__ == "__main__":
    main()
