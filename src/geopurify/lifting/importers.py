"""Features lifted by other tools, imported as :class:`~geopurify.lifting.LiftedFeatures` (not encoders).

OpenScene: its released multi-view fused features.

OpenScene ships one ``<scene>_<k>.pt`` per scene holding ``{"feat": (M, D) half, "mask_full": (N,) bool}``:
the fused features of the M points that some view saw, in point order, and which of the scene's N
points those are.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from .._plugins import Registry
from ..errors import InputError
from ..io.scene import Scene
from .lifted import LiftedFeatures, fill_from_nearest


def import_openscene(path: str | os.PathLike[str], scene: Scene, fill_unseen: bool = True) -> LiftedFeatures:
    """Read OpenScene fused features for ``scene`` (loaded without arbitrary unpickling).

    Raises:
        InputError: missing keys, wrong shapes, or a mask whose length differs from the scene's points.
    """
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise InputError(f"not a readable OpenScene feature file ({type(exc).__name__})", path) from None
    if not isinstance(obj, dict) or "feat" not in obj or "mask_full" not in obj:
        raise InputError("expected a dict with 'feat' (M, D) and 'mask_full' (N,)", path)
    feat, mask = torch.as_tensor(obj["feat"]), torch.as_tensor(obj["mask_full"]).to(torch.bool)
    if mask.shape != (scene.num_points,):
        raise InputError(f"mask_full has {tuple(mask.shape)} entries but scene {scene.name} has "
                         f"{scene.num_points} points", path)
    if feat.dim() != 2 or feat.shape[0] != int(mask.sum()):
        raise InputError(f"feat has shape {tuple(feat.shape)}, expected ({int(mask.sum())}, D) = one row per "
                         "True in mask_full", path)
    features = torch.zeros(scene.num_points, feat.shape[1])
    features[mask] = feat.to(torch.float32)
    if fill_unseen:
        features = fill_from_nearest(scene.coords, features, mask)
    return LiftedFeatures(features, mask, mask.to(torch.int32), "openscene", {"source": str(path)})


FEATURE_IMPORTERS: Registry[Callable[..., LiftedFeatures]] = Registry(
    "feature importer", "geopurify.feature_importers", {"openscene": import_openscene})
"""Readers of features lifted by other tools: ``importer(path, scene, fill_unseen=True) -> LiftedFeatures``."""


def import_features(name: str, path: str | os.PathLike[str], scene: Scene, fill_unseen: bool = True) -> LiftedFeatures:
    """Read features another tool lifted (``name``: ``openscene`` or an entry point of
    ``geopurify.feature_importers``)."""
    return FEATURE_IMPORTERS.get(name)(path, scene, fill_unseen=fill_unseen)
