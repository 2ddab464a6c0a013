"""The ``geometric`` teacher: class-agnostic multi-scale descriptors, no learned weights.

Per point, concatenated in groups, each dimension standardised over the scene, each group scaled to
unit expected norm times its weight, then the whole vector L2-normalised:

==============  =====  ===========================================================================
group           dims   what
==============  =====  ===========================================================================
normal          4      the unit normal and ``|n_z|``
shape @ r       4 x S  eigenvalue features of the neighbourhood covariance at radius r (default
                       10, 30 and 60 cm): linearity ``(l1-l2)/l1``, planarity ``(l2-l3)/l1``,
                       scattering ``l3/l1``, verticality ``1 - |e3_z|`` (``l1 >= l2 >= l3``)
fpfh            3 x B  a fast point-feature histogram: for each of the k nearest neighbours the
                       Darboux-frame angles (alpha, phi, theta) between the two normals, binned
                       into B bins each (SPFH), then ``SPFH_p + mean_q SPFH_q / |p - q|``-weighted
height          1      height above the floor (the 1st percentile of z), metres
colour          3      CIE L*a*b* of the sRGB colour, divided by 100
==============  =====  ===========================================================================

Large radii use the points thinned to a voxel grid of ``r / 4`` (at most ``k_shape`` neighbours
within ``r``), so every scale costs about the same. All steps are vectorised (KD-tree queries,
batched 3x3 eigen-decompositions).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..geometry import knn, voxelize
from ..io.scene import Scene


@dataclass(frozen=True)
class GeometricTeacherConfig:
    radii: tuple[float, ...] = (0.1, 0.3, 0.6)
    k_shape: int = 32
    k_fpfh: int = 16
    fpfh_bins: int = 5
    weights: dict[str, float] = field(default_factory=lambda: {
        "normal": 1.0, "shape": 1.0, "fpfh": 0.7, "height": 0.7, "colour": 1.0})

    def __post_init__(self) -> None:
        if not self.radii or min(self.radii) <= 0:
            raise ValueError(f"radii must be positive, got {self.radii}")
        if self.k_shape < 3 or self.k_fpfh < 1 or self.fpfh_bins < 1:
            raise ValueError("k_shape >= 3, k_fpfh >= 1 and fpfh_bins >= 1 are required")
        unknown = set(self.weights) - {"normal", "shape", "fpfh", "height", "colour"}
        if unknown:
            raise ValueError(f"unknown descriptor groups in weights: {sorted(unknown)}")


def srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """``(N, 3)`` sRGB in [0, 1] -> CIE L*a*b* (D65), L in [0, 100]."""
    rgb = rgb.double().clamp(0, 1)
    lin = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = torch.tensor([[0.4124564, 0.3575761, 0.1804375],
                      [0.2126729, 0.7151522, 0.0721750],
                      [0.0193339, 0.1191920, 0.9503041]], dtype=torch.float64)
    xyz = lin @ m.T / torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)
    eps = (6 / 29) ** 3
    f = torch.where(xyz > eps, xyz.clamp_min(eps) ** (1 / 3), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    lab = torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)
    return lab.float()


def shape_features(points: torch.Tensor, radius: float, k: int = 32) -> torch.Tensor:
    """Eigenvalue features ``(N, 4)`` (linearity, planarity, scattering, verticality) of each point's
    neighbourhood within ``radius``, taken from the points thinned to a ``radius / 4`` grid."""
    grid = voxelize(points, radius / 4)
    ref = grid.to_voxels(points.double())                      # (M, 3) mean point per cell
    kk = min(k, ref.shape[0])
    tree = cKDTree(ref.numpy())
    dist, idx = tree.query(points.double().numpy(), k=kk, distance_upper_bound=radius, workers=-1)
    dist, idx = dist.reshape(len(dist), kk), idx.reshape(len(idx), kk)
    valid = torch.from_numpy(np.isfinite(dist))
    idx_t = torch.from_numpy(np.where(np.isfinite(dist), idx, 0))
    nb = ref[idx_t]                                             # (N, k, 3)
    w = valid.double().unsqueeze(-1)
    cnt = w.sum(1).clamp_min(1)
    mean = (nb * w).sum(1) / cnt
    d = (nb - mean[:, None]) * w
    cov = d.transpose(1, 2) @ d / cnt[..., None] + torch.eye(3, dtype=torch.float64) * 1e-12
    evals, evecs = torch.linalg.eigh(cov)                       # ascending
    l3, l2, l1 = evals[:, 0].clamp_min(0), evals[:, 1].clamp_min(0), evals[:, 2].clamp_min(1e-12)
    out = torch.stack([(l1 - l2) / l1, (l2 - l3) / l1, l3 / l1, 1 - evecs[:, 2, 0].abs()], 1)
    few = valid.sum(1) < 3                                      # isolated: no shape information
    out[few] = 0
    return out.float()


def fpfh(points: torch.Tensor, normals: torch.Tensor, k: int = 16, bins: int = 5) -> torch.Tensor:
    """Fast point-feature histograms ``(N, 3 * bins)`` from the ``k`` nearest neighbours (module docs)."""
    dist, idx = knn(points, points, k, exclude_self=True)
    p, n = points.double(), normals.double()
    d = p[idx] - p[:, None]                                     # (N, k, 3)
    dn = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    u = n[:, None].expand_as(d)
    v = torch.cross(u, dn, dim=-1)
    v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    w = torch.cross(u, v, dim=-1)
    nq = n[idx]
    alpha = (v * nq).sum(-1)                                    # [-1, 1]
    phi = (u * dn).sum(-1)                                      # [-1, 1]
    theta = torch.atan2((w * nq).sum(-1), (u * nq).sum(-1)) / torch.pi   # [-1, 1]
    spfh = []
    for a in (alpha, phi, theta):
        b = ((a.clamp(-1, 1) + 1) / 2 * bins).long().clamp_max(bins - 1)
        spfh.append(torch.nn.functional.one_hot(b, bins).double().mean(1))
    s = torch.cat(spfh, 1)                                      # (N, 3B)
    wq = 1.0 / dist.double().clamp_min(1e-3)
    nb = (s[idx] * wq[..., None]).sum(1) / wq.sum(1, keepdim=True)
    return (0.5 * (s + nb)).float()


class GeometricTeacher:
    """Multi-scale geometric and colour descriptors (module docs); ``teacher(scene) -> (N, D)``."""

    name = "geometric"

    def __init__(self, config: GeometricTeacherConfig | None = None, **overrides: Any) -> None:
        base = asdict(config or GeometricTeacherConfig())
        base.update(overrides)
        base["radii"] = tuple(base["radii"])
        self.config = GeometricTeacherConfig(**base)
        self.settings = {**asdict(self.config), "radii": list(self.config.radii)}

    def groups(self, scene: Scene) -> dict[str, torch.Tensor]:
        """The raw descriptor groups, before standardisation (for inspection and tests)."""
        c = self.config
        pts, nrm = scene.coords, scene.normals
        z = pts[:, 2]
        floor = torch.quantile(z[torch.randperm(len(z), generator=torch.Generator().manual_seed(0))[:100_000]], 0.01)
        return {
            "normal": torch.cat([nrm, nrm[:, 2:].abs()], 1),
            "shape": torch.cat([shape_features(pts, r, c.k_shape) for r in c.radii], 1),
            "fpfh": fpfh(pts, nrm, min(c.k_fpfh, scene.num_points - 1), c.fpfh_bins),
            "height": (z - floor).clamp(-0.5, 4.0)[:, None],
            "colour": srgb_to_lab(scene.colors) / 100.0,
        }

    def __call__(self, scene: Scene) -> torch.Tensor:
        parts = []
        for name, g in self.groups(scene).items():
            weight = self.config.weights.get(name, 1.0)
            if weight == 0:
                continue
            g = (g - g.mean(0)) / g.std(0).clamp_min(1e-6)     # standardise per dimension
            parts.append(g * (weight / np.sqrt(g.shape[1])))   # each group: expected norm = its weight
        return torch.nn.functional.normalize(torch.cat(parts, 1), dim=1)
