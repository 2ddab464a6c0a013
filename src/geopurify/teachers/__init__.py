"""3D teachers: frozen per-point feature extractors whose similarities supervise the student.

A :class:`Teacher` maps a :class:`~geopurify.io.Scene` to per-point features ``(N, D) float32``
(L2-normalised rows; only cosine similarities are used). Built-ins:

===============  ===========================================================================
``geometric``    class-agnostic multi-scale geometric + colour descriptors; no weights (default)
``precomputed``  per-point features from ``<folder>/<scene name>.npy`` or ``.npz`` (e.g. Sonata
                 features computed with its official code on a GPU machine)
``sonata``       Sonata (PTv3) features from a released checkpoint, in plain PyTorch
                 (``path=sonata.pth``; :mod:`geopurify.teachers.sonata`)
===============  ===========================================================================

Third-party packages add teachers through the entry-point group ``geopurify.teachers`` (a factory
taking keyword options). :func:`teacher_features` computes a scene's features once and caches them
on disk (the official code recomputes its teacher for every scene in every epoch).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from .._fileio import atomic_path, output_path, safe_name
from .._plugins import Registry
from .._validate import all_finite
from ..errors import InputError
from ..io.scene import Scene

log = logging.getLogger(__name__)


@runtime_checkable
class Teacher(Protocol):
    """``teacher(scene) -> (N, D) float32``; ``name`` and JSON-serialisable ``settings`` identify it
    (they key the disk cache)."""

    name: str
    settings: dict[str, Any]

    def __call__(self, scene: Scene) -> torch.Tensor: ...


def _geometric(**kw: Any) -> Teacher:
    from .geometric import GeometricTeacher
    return GeometricTeacher(**kw)


def _precomputed(**kw: Any) -> Teacher:
    from .precomputed import PrecomputedTeacher
    return PrecomputedTeacher(**kw)


def _sonata(**kw: Any) -> Teacher:
    from .sonata import SonataTeacher
    return SonataTeacher(**kw)


TEACHERS: Registry[Callable[..., Teacher]] = Registry("teacher", "geopurify.teachers",
                                                    {"geometric": _geometric, "precomputed": _precomputed,
                                                     "sonata": _sonata})


def get_teacher(name: str, **options: Any) -> Teacher:
    """Build a teacher by registry name (built-ins, then the ``geopurify.teachers`` entry points)."""
    return TEACHERS.build(name, **options)


def _cache_key(scene: Scene, teacher: Teacher) -> str:
    h = hashlib.sha1()
    h.update(json.dumps({"teacher": teacher.name, "settings": teacher.settings}, sort_keys=True).encode())
    for t in (scene.coords, scene.colors, scene.normals):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def teacher_features(scene: Scene, teacher: Teacher, cache_dir: str | os.PathLike[str] | None = None) -> torch.Tensor:
    """A scene's teacher features ``(N, D) float32`` with L2-normalised rows, cached on disk.

    The cache file ``<cache_dir>/<scene>.<teacher>.<key>.npy`` is keyed by the teacher's name and
    settings and by the scene's points, colours and normals, so a changed input never reads a stale
    entry. Written atomically.
    """
    path = None
    if cache_dir is not None:
        path = output_path(cache_dir, f"{scene.name}.{safe_name(teacher.name)}.{_cache_key(scene, teacher)}.npy")
        if path.is_file():
            try:
                feats = torch.from_numpy(np.load(path, allow_pickle=False))
                if feats.dim() == 2 and feats.shape[0] == scene.num_points and all_finite(feats):
                    return feats
                log.warning("recomputing %s: the cache entry has shape %s or NaN", path, tuple(feats.shape))
            except (ValueError, OSError, EOFError) as exc:
                log.warning("recomputing %s: unreadable cache entry (%s)", path, exc)
    feats = teacher(scene)
    if feats.dim() != 2 or feats.shape[0] != scene.num_points:
        raise InputError(f"teacher {teacher.name!r} returned shape {tuple(feats.shape)} for "
                         f"{scene.num_points} points of scene {scene.name!r}")
    if not all_finite(feats):
        raise InputError(f"teacher {teacher.name!r} returned NaN or inf for scene {scene.name!r}")
    feats = torch.nn.functional.normalize(feats.float(), dim=1).contiguous()
    if path is not None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, feats.numpy())
    return feats


__all__ = ["Teacher", "TEACHERS", "get_teacher", "teacher_features"]
