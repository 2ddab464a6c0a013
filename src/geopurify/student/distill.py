"""Contrastive distillation from a 3D teacher: pair sampling, InfoNCE, training augmentation.

Everything is on the student's voxel grid (a "point" below is a voxel, its teacher feature the mean
of its points' features), because the student embeds voxels and pooling runs on voxels.

Pair sampling (per scene and iteration, as upstream ``sample_contrastive_pairs_hybrid``):

* anchors: ``min(anchors, M // 3)`` voxels drawn without replacement;
* positive: ``argmax_j cos(t_a, t_j)`` over all voxels ``j != a`` (the teacher's most similar voxel);
* ``macro`` negatives (48): the globally least similar voxels, ``j`` not the anchor or positive;
* ``micro`` negatives (15): the least similar among the anchor's ``micro_knn`` (96) nearest voxels.
  Upstream keeps them whatever their similarity; ``micro_max_similarity`` (off by default) rejects
  those the teacher finds more similar than the threshold, since they are often parts of the anchor's
  own object (false negatives). Rejected slots are masked out of the loss.

The anchors x voxels similarity matrix is built in chunks of anchors within ``budget_bytes``.

Loss: InfoNCE on the student's unit embeddings ``z``,
``-log( exp(z_a.z_p / tau) / (exp(z_a.z_p / tau) + sum_n exp(z_a.z_n / tau)) )``, tau = 0.07, averaged
over anchors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._validate import finite_fields
from ..geometry import knn


@dataclass(frozen=True)
class PairConfig:
    """How distillation pairs are drawn (defaults as upstream).

    Attributes:
        anchors: anchor voxels per scene and iteration.
        macro: negatives among the globally least similar voxels.
        micro: negatives among the least similar of each anchor's micro_knn nearest voxels.
        micro_knn: neighbourhood of the micro negatives.
        micro_max_similarity: reject micro negatives more similar than this (None: keep all).
        temperature: InfoNCE temperature.
        budget_bytes: memory for the memoised pair table.
    """

    anchors: int = 4096
    macro: int = 48
    micro: int = 15
    micro_knn: int = 96
    micro_max_similarity: float | None = None
    temperature: float = 0.07
    budget_bytes: int = 256 * 2 ** 20

    def __post_init__(self) -> None:
        finite_fields(self)
        if self.anchors < 1 or self.macro < 0 or self.micro < 0 or self.macro + self.micro < 1:
            raise ValueError("need at least one anchor and one negative")
        if self.micro > self.micro_knn:
            raise ValueError(f"micro ({self.micro}) cannot exceed micro_knn ({self.micro_knn})")
        if self.temperature <= 0 or self.budget_bytes <= 0:
            raise ValueError("temperature and budget_bytes must be positive")


@dataclass(frozen=True, eq=False)
class Pairs:
    """Sampled pairs: ``anchors (A,)``, ``positives (A,)``, ``negatives (A, macro + micro)`` voxel
    indices (macro first), ``valid (A, macro + micro) bool`` (False: slot unused)."""

    anchors: torch.Tensor
    positives: torch.Tensor
    negatives: torch.Tensor
    valid: torch.Tensor


def sample_pairs(teacher: torch.Tensor, centers: torch.Tensor, config: PairConfig = PairConfig(),
                 generator: torch.Generator | None = None) -> Pairs:
    """Draw ``min(anchors, M // 3)`` random anchors and find their pairs (:func:`pairs_for_anchors`)."""
    m = teacher.shape[0]
    if m < 3:
        raise ValueError(f"need at least 3 voxels to sample pairs, got {m}")
    a = max(1, min(config.anchors, m // 3))
    anchors = torch.randperm(m, generator=generator)[:a].to(teacher.device)
    return pairs_for_anchors(teacher, centers, anchors, config)


def pairs_for_anchors(teacher: torch.Tensor, centers: torch.Tensor, anchors: torch.Tensor,
                      config: PairConfig = PairConfig()) -> Pairs:
    """Positive and negatives of the given anchors (module docstring); deterministic.

    Args:
        teacher: ``(M, Dt)`` teacher features per voxel (normalised here).
        centers: ``(M, 3)`` voxel centres in metres (for the micro neighbourhood).
        anchors: ``(A,) int64`` distinct voxel indices.
    """
    m = teacher.shape[0]
    if m < 3:
        raise ValueError(f"need at least 3 voxels to sample pairs, got {m}")
    t = torch.nn.functional.normalize(teacher.float(), dim=1)
    anchors = anchors.to(t.device)
    a = anchors.numel()
    n_macro = min(config.macro, m - 2)
    k_sp = min(config.micro_knn, m - 1)
    n_micro = min(config.micro, k_sp)
    _, nb = knn(centers[anchors], centers, k_sp + 1)
    own = nb == anchors[:, None]
    drop = torch.where(own.any(1), own.float().argmax(1), torch.full_like(anchors, k_sp))
    keep = torch.ones_like(nb, dtype=torch.bool)
    keep[torch.arange(a), drop] = False
    nb = nb[keep].reshape(a, k_sp)

    chunk = max(1, config.budget_bytes // (4 * m * 2))
    pos = torch.empty(a, dtype=torch.int64, device=t.device)
    neg = torch.empty(a, n_macro + n_micro, dtype=torch.int64, device=t.device)
    valid = torch.ones(a, n_macro + n_micro, dtype=torch.bool, device=t.device)
    for s in range(0, a, chunk):
        rows = torch.arange(min(chunk, a - s), device=t.device)
        anc = anchors[s:s + chunk]
        sim = t[anc] @ t.T                                          # (c, M)
        sim[rows, anc] = -math.inf
        p = sim.argmax(1)
        pos[s:s + chunk] = p
        sim[rows, anc] = math.inf
        sim[rows, p] = math.inf
        if n_macro:
            neg[s:s + chunk, :n_macro] = torch.topk(sim, n_macro, dim=1, largest=False).indices
        if n_micro:
            nbc = nb[s:s + chunk]
            local = sim.gather(1, nbc)
            if config.micro_max_similarity is not None:
                local = local.masked_fill(local > config.micro_max_similarity, math.inf)
            vals, j = torch.topk(local, n_micro, dim=1, largest=False)
            neg[s:s + chunk, n_macro:] = nbc.gather(1, j)
            valid[s:s + chunk, n_macro:] = torch.isfinite(vals)
    return Pairs(anchors, pos, neg, valid)


class PairTable:
    """Memoised pairs of one scene's canonical (un-augmented) voxel grid.

    A voxel's positive and negatives depend only on the teacher, so each anchor's row is computed once
    (the first time it is drawn) and reused in later epochs: after ``k`` epochs only a share
    ``(1 - A/M)^k`` of the drawn anchors is new (A anchors of M voxels), so a 100-epoch run computes each
    scene's pairs about once instead of 100 times (1.4 s per draw of 4096 anchors on 50k voxels on two
    cores, ``benchmarks/bench_training.py``). Under augmentation the grid changes;
    :meth:`sample` maps canonical voxels to the augmented grid through one member point each.
    """

    def __init__(self, teacher: torch.Tensor, centers: torch.Tensor, config: PairConfig) -> None:
        self.teacher, self.centers, self.config = teacher, centers, config
        m = teacher.shape[0]
        width = min(config.macro, m - 2) + min(config.micro, config.micro_knn, m - 1)
        self.pos = torch.full((m,), -1, dtype=torch.int64)
        self.neg = torch.zeros(m, width, dtype=torch.int64)
        self.valid = torch.zeros(m, width, dtype=torch.bool)

    @property
    def num_voxels(self) -> int:
        return int(self.pos.shape[0])

    def sample(self, generator: torch.Generator | None = None) -> Pairs:
        """Random anchors (as :func:`sample_pairs`) with memoised rows, on the canonical grid."""
        m = self.num_voxels
        a = max(1, min(self.config.anchors, m // 3))
        anchors = torch.randperm(m, generator=generator)[:a]
        todo = anchors[self.pos[anchors] < 0]
        if todo.numel():
            p = pairs_for_anchors(self.teacher, self.centers, todo, self.config)
            self.pos[todo], self.neg[todo], self.valid[todo] = p.positives.cpu(), p.negatives.cpu(), p.valid.cpu()
        return Pairs(anchors, self.pos[anchors], self.neg[anchors], self.valid[anchors])


def info_nce(embeddings: torch.Tensor, pairs: Pairs, temperature: float = 0.07) -> torch.Tensor:
    """Mean InfoNCE over anchors (module docstring); ``embeddings (M, E)`` must be unit rows."""
    za = embeddings[pairs.anchors]
    pos = (za * embeddings[pairs.positives]).sum(-1, keepdim=True)
    neg = torch.einsum("ae,ane->an", za, embeddings[pairs.negatives])
    neg = neg.masked_fill(~pairs.valid, -math.inf)
    logits = torch.cat([pos, neg], 1) / temperature
    return torch.nn.functional.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.int64,
                                                                  device=logits.device))


def random_rotation(generator: torch.Generator, max_yaw: float = math.pi, max_tilt: float = math.pi / 64,
                    scale: tuple[float, float] = (0.9, 1.1)) -> tuple[torch.Tensor, float]:
    """A random rotation ``R = Rz(yaw) Ry(b) Rx(a)`` (yaw in ±max_yaw, tilts in ±max_tilt) and a scale
    factor in ``scale``: the training augmentation (never applied at inference)."""
    u = torch.rand(4, generator=generator, dtype=torch.float64)
    yaw, ta, tb = (2 * u[0] - 1) * max_yaw, (2 * u[1] - 1) * max_tilt, (2 * u[2] - 1) * max_tilt
    s = scale[0] + float(u[3]) * (scale[1] - scale[0])
    ca, sa, cb, sb, cy, sy = (float(math.cos(ta)), float(math.sin(ta)), float(math.cos(tb)), float(math.sin(tb)),
                              float(math.cos(yaw)), float(math.sin(yaw)))
    rx = torch.tensor([[1, 0, 0], [0, ca, -sa], [0, sa, ca]], dtype=torch.float64)
    ry = torch.tensor([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]], dtype=torch.float64)
    rz = torch.tensor([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]], dtype=torch.float64)
    return rz @ ry @ rx, s


def augment(coords: torch.Tensor, normals: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate (and scale) points and rotate normals with :func:`random_rotation`."""
    r, s = random_rotation(generator)
    r = r.to(coords.device)
    return ((coords.double() @ r.T) * s).float(), (normals.double() @ r.T).float()
