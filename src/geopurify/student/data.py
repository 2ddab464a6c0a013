"""Training data for the student: scenes with lifted and teacher features, where they come from, and the
per-iteration batches (augmentation, voxel grid, student input, pairs) drawn from them."""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._fileio import output_path, safe_name
from ..errors import InputError
from ..geometry import voxelize
from ..io.layouts import load_scan
from ..io.scene import Scene
from ..lifting.lifted import FeatureSource, LiftedFeatures
from ..teachers import teacher_features
from .config import TrainConfig
from .distill import Pairs, PairTable, augment
from .network import StudentAffinityNet, student_inputs
from .sparse import SparsePyramid

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class DistillScene:
    """One training scene: geometry, lifted semantics ``(N, D)``, teacher features ``(N, Dt)`` and,
    when known, what the lifted features were made with (recorded in the student's checkpoint)."""

    scene: Scene
    semantic: torch.Tensor
    teacher: torch.Tensor
    source: FeatureSource | None = None

    def __post_init__(self) -> None:
        n = self.scene.num_points
        for name in ("semantic", "teacher"):
            t = getattr(self, name)
            if t.dim() != 2 or t.shape[0] != n:
                raise InputError(f"{name} features of scene {self.scene.name!r} have shape {tuple(t.shape)}, "
                                 f"expected ({n}, D)")

    @property
    def name(self) -> str:
        return self.scene.name


def pair_features(item: DistillScene, semantic_weight: float = 0.0) -> torch.Tensor:
    """The features whose similarities choose the pairs: the unit teacher features, optionally
    concatenated with ``semantic_weight`` times the unit lifted features (label-free; off by default,
    as upstream, whose pairs come from the teacher alone)."""
    t = torch.nn.functional.normalize(item.teacher.float(), dim=1)
    if semantic_weight <= 0:
        return t
    s = torch.nn.functional.normalize(item.semantic.float(), dim=1)
    return torch.nn.functional.normalize(torch.cat([t, semantic_weight * s], 1), dim=1)


def common_source(scenes: Sequence[DistillScene]) -> FeatureSource:
    """The feature source shared by the training scenes (what the student's checkpoint records): the
    vocabulary only when every scene has the same one; ``unknown`` parts where a scene does not say.

    Raises:
        InputError: scenes lifted with different encoders.
    """
    dim = int(scenes[0].semantic.shape[1])
    known = [s.source for s in scenes if s.source is not None]
    encoders = {s.encoder for s in known if s.known_encoder}
    if len(encoders) > 1:
        raise InputError(f"training scenes were lifted with different encoders ({', '.join(sorted(encoders))}): "
                         "train on features of one encoder")
    if len(known) < len(scenes) or not known:
        return FeatureSource(encoders.pop() if encoders else "unknown", dim)
    def same(attr: str) -> Any:
        values = {getattr(s, attr) for s in known}
        return values.pop() if len(values) == 1 else None
    return FeatureSource(encoders.pop() if encoders else "unknown", dim, same("text_encoder"), same("vocabulary"),
                         same("fusion"))


def lifted_path(features_dir: str | os.PathLike[str], scene_name: str) -> Path:
    """Where the lifted features of a scene live: ``<features_dir>/<scene name>.npz``, or, when ``features_dir``
    is the output folder of ``geopurify run`` (it holds ``manifest.json``), ``<features_dir>/<scan>/<scene>.npz``."""
    name = f"{safe_name(scene_name)}.npz"
    direct = output_path(features_dir, name)
    if direct.exists() or not (Path(features_dir) / "manifest.json").is_file():
        return direct
    found = sorted(Path(features_dir).glob(f"*/{glob.escape(name)}"))
    if len(found) > 1:
        raise InputError(f"{len(found)} scans of this run folder are named {scene_name!r}: "
                         f"{', '.join(str(f.parent.name) for f in found)}; give one scan's .npz", features_dir)
    return found[0] if found else direct


def prepare_scene(path: str | os.PathLike[str], features_dir: str | os.PathLike[str], teacher: Any,
                  cache_dir: str | os.PathLike[str] | None = None, *, layout: str | None = None,
                  lift: Callable[[Any], Any] | None = None, **load_options: Any) -> DistillScene:
    """Load a scan, its lifted features and its (cached) teacher features.

    The lifted features come from ``<features_dir>/<scene>.npz``; when that file is missing and ``lift``
    (``scan -> LiftedFeatures``) is given, they are lifted now and saved there for the next run.

    Raises:
        InputError: unreadable scan, or no lifted features and no way to make them.
    """

    scan = load_scan(path, layout=layout, **load_options)
    scene = scan.scene
    fpath = lifted_path(features_dir, scene.name)
    if fpath.is_file():
        lifted = LiftedFeatures.load(fpath, scene=scene)
    elif lift is not None:
        log.info("lifting features for %s (no %s yet)", scene.name, fpath)
        lifted = lift(scan)
        lifted.save(fpath)
    else:
        raise InputError(f"no lifted features for scene {scene.name!r} (run `geopurify lift` first, "
                         "or pass an encoder)", fpath)
    return DistillScene(scene, lifted.features, teacher_features(scene, teacher, cache_dir), lifted.source)


def seed_of(*parts: int) -> int:
    """A 63-bit seed from integers (FNV-1a): all randomness of a run derives from ``(seed, epoch, scene, ...)``."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (p & 0xFFFFFFFFFFFF)) * 1099511628211) & 0x7FFFFFFFFFFFFFFF
    return h


class SceneSampler:
    """A training scene's canonical voxel grid and its memoised :class:`~geopurify.student.distill.PairTable`."""

    def __init__(self, item: DistillScene, config: TrainConfig, device: torch.device) -> None:
        self.item, self.config, self.device = item, config, device
        self.grid = voxelize(item.scene.coords, config.voxel_size)
        n = item.scene.num_points
        self.rep = torch.full((self.grid.num_voxels,), n, dtype=torch.int64)       # one member point per voxel
        self.rep.scatter_reduce_(0, self.grid.inverse, torch.arange(n), reduce="amin")
        teacher = self.grid.to_voxels(pair_features(item, config.semantic_weight)).to(device)
        self.table = PairTable(teacher, self.grid.centers.to(device), config.pairs)
        # the student input is built where the student runs: (N, D) features move once, not every iteration
        self.semantic, self.colors = item.semantic.to(device), item.scene.colors.to(device)

    def batch(self, student: StudentAffinityNet,
              generator: torch.Generator | None) -> tuple[torch.Tensor, SparsePyramid, Pairs]:
        """Student input, its :class:`~geopurify.student.sparse.SparsePyramid` and pairs; augmented when
        ``generator`` is given and enabled.
        Without a generator the pairs are a fixed draw (for validation)."""
        sc, grid = self.item.scene, self.grid
        coords, normals = sc.coords, sc.normals
        fixed = generator is None
        if fixed:
            generator = torch.Generator().manual_seed(seed_of(self.config.seed, 7))
        pairs = self.table.sample(generator)
        if self.config.augment and not fixed:
            coords, normals = augment(coords, normals, generator)
            grid = voxelize(coords, self.config.voxel_size)
            to_new = grid.inverse[self.rep]                                         # canonical -> augmented voxel
            neg = to_new[pairs.negatives]
            a = to_new[pairs.anchors]
            pairs = Pairs(a, to_new[pairs.positives], neg, pairs.valid & (neg != a[:, None]))
        x = student_inputs(grid, self.semantic, self.colors, normals.to(self.device))
        pyramid = student.pyramid(grid.coords.to(self.device))
        return x, pyramid, Pairs(*(t.to(self.device) for t in (pairs.anchors, pairs.positives, pairs.negatives,
                                                              pairs.valid)))
