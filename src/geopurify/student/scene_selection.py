"""Choosing the few training scenes: diverse scenes, without 3D labels.

Upstream (``dataset/data_choose_zero.py``, spec 1.7) describes each scene by the histogram of its
**ground-truth** classes, keeps scenes whose class count ``Nc`` and class entropy ``Hc`` are at least the
median, clusters the histograms with k-means and takes the best-scoring scenes (``MinMax(Hc) +
MinMax(Nc)``) from each cluster; when there are more clusters than scenes to pick, upstream gives the
extra picks to the first clusters in k-means order, here to the clusters with the best scores.
:func:`select_scenes` applies this rule to any histograms:

* :func:`lifted_histograms` (label-free, the default): histograms of *pseudo-classes*, k-means clusters
  of the lifted 2D features pooled over all candidate scenes;
* :func:`label_histograms`: the ground-truth histograms, to reproduce the paper's selection.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def kmeans(x: torch.Tensor, k: int, iters: int = 30, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means with k-means++ initialisation (seeded). Returns ``(centres (k, D), assignment (N,))``."""
    n = x.shape[0]
    k = min(k, n)
    g = torch.Generator().manual_seed(seed)
    x = x.float()
    centres = [x[int(torch.randint(n, (1,), generator=g))]]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        probs = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full((n,), 1.0 / n)
        centres.append(x[int(torch.multinomial(probs, 1, generator=g))])
        d2 = torch.minimum(d2, ((x - centres[-1]) ** 2).sum(1))
    c = torch.stack(centres)
    assign = torch.zeros(n, dtype=torch.int64)
    for _ in range(iters):
        assign = torch.cdist(x, c).argmin(1)
        new = torch.zeros_like(c).index_add_(0, assign, x)
        cnt = torch.bincount(assign, minlength=k).float()
        moved = cnt > 0
        new[moved] /= cnt[moved, None]
        new[~moved] = c[~moved]
        if torch.allclose(new, c):
            break
        c = new
    return c, assign


def lifted_histograms(features: Sequence[torch.Tensor], pseudo_classes: int = 20, sample: int = 4000,
                      seed: int = 0) -> torch.Tensor:
    """``(S, pseudo_classes)`` normalised histograms of pseudo-classes (k-means of the unit lifted
    features of ``sample`` random points per scene, pooled over scenes)."""
    g = torch.Generator().manual_seed(seed)
    picks = [torch.nn.functional.normalize(f[torch.randperm(len(f), generator=g)[:sample]].float(), dim=1)
             for f in features]
    centres, _ = kmeans(torch.cat(picks), pseudo_classes, seed=seed)
    hists = [torch.bincount(torch.cdist(p, centres).argmin(1), minlength=len(centres)).float() for p in picks]
    h = torch.stack(hists)
    return h / h.sum(1, keepdim=True).clamp_min(1)


def label_histograms(labels: Sequence[torch.Tensor], num_classes: int) -> torch.Tensor:
    """``(S, num_classes)`` normalised ground-truth class histograms (ignored labels < 0 skipped)."""
    h = torch.stack([torch.bincount(lab[(lab >= 0) & (lab < num_classes)].long(), minlength=num_classes).float()
                     for lab in labels])
    return h / h.sum(1, keepdim=True).clamp_min(1)


def select_scenes(histograms: torch.Tensor, count: int, clusters: int = 21, min_share: float = 0.005,
                  seed: int = 42) -> list[int]:
    """Indices of ``count`` diverse scenes by the upstream rule (module docstring).

    ``Nc`` counts classes holding at least ``min_share`` of a scene (pseudo-class histograms are never
    exactly zero). When the median filter leaves fewer than ``count`` scenes, the best-scoring others
    fill up. Deterministic.
    """
    s = histograms.shape[0]
    if count >= s:
        return list(range(s))
    h = histograms.double()
    nc = (h >= min_share).sum(1).double()
    p = h.clamp_min(1e-12)
    hc = -(h * p.log2()).sum(1)

    def minmax(v: torch.Tensor) -> torch.Tensor:
        return (v - v.min()) / (v.max() - v.min()) if float(v.max() - v.min()) > 0 else torch.zeros_like(v)
    score = minmax(hc) + minmax(nc)
    keep = torch.nonzero((nc >= torch.quantile(nc, 0.5)) & (hc >= torch.quantile(hc, 0.5))).flatten()
    chosen: list[int] = []
    if len(keep) > count:
        k = min(clusters, len(keep))
        _, assign = kmeans(h[keep].float(), k, seed=seed)
        # clusters ordered by their best score, so that the extra picks go to the strongest clusters
        best = [float(score[keep[assign == c]].max()) if bool((assign == c).any()) else -1.0 for c in range(k)]
        for rank, c in enumerate(sorted(range(k), key=lambda c: -best[c])):
            take = count // k + (1 if rank < count % k else 0)
            members = keep[assign == c]
            members = members[torch.argsort(score[members], descending=True, stable=True)]
            chosen += members[:take].tolist()
    else:
        chosen = keep.tolist()
    for i in torch.argsort(score, descending=True, stable=True).tolist():   # fill up (empty clusters etc.)
        if len(chosen) >= count:
            break
        if i not in chosen:
            chosen.append(i)
    return sorted(chosen[:count])
