"""Human-readable summaries of scans (what ``geopurify info`` prints)."""

from __future__ import annotations

import torch

from ..geometry import voxelize
from .layouts import Scan


def describe_scan(scan: Scan, voxel_size: float = 0.02) -> str:
    """A Markdown-ish multi-line summary: points, bounds, frames, labels, instances."""
    s = scan.scene
    lo, hi = s.bounds
    ext = hi - lo
    grid = voxelize(s.coords, voxel_size)
    lines = [
        f"scene      {s.name}  (layout {scan.layout}: {scan.path})",
        f"points     {s.num_points:,}   voxels@{voxel_size * 100:g}cm {grid.num_voxels:,}",
        f"bbox min   {_vec(lo)} m",
        f"bbox max   {_vec(hi)} m",
        f"extent     {_vec(ext)} m",
        f"colours    mean {_vec(s.colors.mean(0))} (sRGB 0..1)",
        f"normals    {'estimated (PCA, k=16)' if scan.normals_estimated else 'from the source'}",
    ]
    if scan.frames is None:
        lines.append("frames     none")
    else:
        lines.append(f"frames     {len(scan.frames)}" + ("" if not len(scan.frames) else
                     f" (with depth: {'yes' if scan.frames.has_depth else 'no'})"))
        if len(scan.frames):
            f0 = scan.frames[0]
            lines.append(f"image      {f0.size[0]}x{f0.size[1]}"
                         + ("" if f0.depth is None else f", depth {f0.depth.shape[1]}x{f0.depth.shape[0]}"
                            + _depth_range(f0.depth)))
    if s.labels is None:
        lines.append("labels     none")
    else:
        ls = s.label_set
        if ls is None:
            raise ValueError(f"scene {s.name!r} has labels but no label set")
        counts = torch.bincount(s.labels[s.labels >= 0], minlength=ls.num_classes)
        ignored = int((s.labels < 0).sum())
        lines.append(f"labels     {ls.name}: {int((counts > 0).sum())} of {ls.num_classes} classes present, "
                     f"{ignored:,} points ignored ({100 * ignored / s.num_points:.1f}%)")
        order = torch.argsort(counts, descending=True)
        for c in order.tolist():
            if counts[c] == 0:
                break
            note = " (unscored)" if ls.class_names[c] in ls.unscored else ""
            lines.append(f"  {ls.class_names[c]:<18} {int(counts[c]):>9,}  {100 * counts[c] / s.num_points:5.1f}%{note}")
    if s.instances is not None:
        n_inst = int(torch.unique(s.instances[s.instances >= 0]).numel())
        lines.append(f"instances  {n_inst}")
    return "\n".join(lines)


def _vec(v: torch.Tensor) -> str:
    return "(" + ", ".join(f"{float(x):.3f}" for x in v) + ")"


def _depth_range(depth: torch.Tensor) -> str:
    valid = depth[depth > 0]
    if valid.numel() == 0:
        return " (first frame: no valid depth)"
    return f" {float(valid.min()):.2f}-{float(valid.max()):.2f} m (first frame)"
