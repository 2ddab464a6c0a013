"""Noisy per-point "lifted" features made from ground truth, for tests and quick experiments.

A stand-in for a 2D vision-language model when none is available: every class ``c`` gets a fixed
random unit prototype ``p_c`` (seeded), and point ``i`` gets ``p_{c'_i} + noise * g_i / sqrt(D)``
(``g_i`` standard normal), where ``c'_i`` is its true class corrupted by, in order:

1. ``instance_flip``: each instance takes another class with this probability (a whole-object
   confusion that geometry cannot repair);
2. ``boundary_flip``: points within ``boundary_radius`` of a point of another instance take that
   point's (corrupted) class with this probability (the boundary bleeding of coarse 2D masks);
3. ``point_flip``: each point takes a uniformly random class with this probability.

Points with an ignored label (-1) get their own "unlabelled" prototype. The simulated 2D segmenter of
the benchmark issue replaces this with view-dependent mask errors lifted by the real lifting code.
"""

from __future__ import annotations

import numpy as np
import torch

from ..geometry import knn
from ..io.scene import Scene


def noisy_class_features(scene: Scene, dim: int = 64, *, noise: float = 0.5, instance_flip: float = 0.0,
                         boundary_flip: float = 0.3, boundary_radius: float = 0.06, point_flip: float = 0.1,
                         seed: int = 0, prototype_seed: int = 1234) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-point features ``(N, dim) float32`` and the corrupted labels ``(N,) int64`` behind them.

    ``prototype_seed`` fixes the class prototypes (share it between scenes so that a class means the
    same direction everywhere); ``seed`` drives the corruption. Prototypes are returned by
    :func:`class_prototypes`.
    """
    if scene.labels is None or scene.label_set is None:
        raise ValueError(f"scene {scene.name!r} has no labels")
    rng = np.random.default_rng(seed)
    c = scene.label_set.num_classes
    labels = scene.labels.numpy().copy()
    inst = scene.instances.numpy() if scene.instances is not None else np.full_like(labels, -1)
    if instance_flip > 0:
        for k in np.unique(inst[inst >= 0]):
            if rng.random() < instance_flip:
                members = inst == k
                true = labels[members][0]
                if true >= 0:
                    labels[members] = (true + rng.integers(1, c)) % c
    if boundary_flip > 0:
        _, nb = knn(scene.coords, scene.coords, 8, exclude_self=True)
        d = (scene.coords[nb] - scene.coords[:, None]).norm(dim=-1).numpy()
        nb = nb.numpy()
        other = (inst[nb] != inst[:, None]) & (d <= boundary_radius)
        has = other.any(1) & (rng.random(len(labels)) < boundary_flip)
        first = other.argmax(1)
        src = nb[np.arange(len(labels)), first]
        labels = np.where(has, labels[src], labels)
    if point_flip > 0:
        flip = rng.random(len(labels)) < point_flip
        labels[flip] = rng.integers(0, c, int(flip.sum()))
    protos = class_prototypes(c + 1, dim, prototype_seed)            # last row: unlabelled
    idx = np.where(labels >= 0, labels, c)
    feats = protos[torch.from_numpy(idx)] + noise * torch.from_numpy(rng.standard_normal((len(idx), dim))).float() \
        / np.sqrt(dim)
    return feats.float(), torch.from_numpy(labels).long()


def class_prototypes(num: int, dim: int, seed: int = 1234) -> torch.Tensor:
    """``(num, dim)`` fixed random unit vectors (the "text embeddings" of the classes)."""
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(num, dim, generator=g), dim=1)
