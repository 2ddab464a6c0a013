"""Training the student by contrastive distillation: a plain, resumable, deterministic loop.

One iteration = one scene: augment (training only), voxelise at 2 cm, build the student input on the
**whole** voxel grid, embed every voxel, sample pairs from the teacher (:mod:`geopurify.distill`) and
take one AdamW step on their InfoNCE loss. The student sees the whole scene as context, as at
inference; the official code feeds it only the sampled voxels, so its training and test inputs differ.

Optimiser as upstream: AdamW (weight decay 1e-5) with three groups, learning rates ``lr * 0.1`` (stem),
``lr`` (blocks), ``lr * 5`` (head) for ``lr = 1e-4``; per-iteration schedule: linear warm-up over
``warmup_epochs`` then cosine decay to ``lr * 1e-3``.

Every epoch (every ``save_every`` epochs and after the last: with few scenes on a GPU an epoch takes
a fraction of a second, and an upstream-size checkpoint with its optimiser state is ~0.8 GB) the loop
validates and writes ``RUN_DIR/last.pt`` atomically (student config and weights, optimiser and
scheduler state, history: one record per such period); ``best.pt`` keeps the period with the lowest
validation loss, a label-free criterion: the InfoNCE loss on validation scenes (the training scenes
when none are given) with fixed pairs and no augmentation. All randomness derives from
``(seed, epoch, scene)``, so a run interrupted and resumed from ``last.pt`` ends with the same weights
as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ._fileio import atomic_path
from .distill import PairConfig, Pairs, PairTable, augment, info_nce
from .errors import InputError
from .geometry import voxelize
from .scene import Scene
from .sparse import SparsePyramid
from .student import StudentAffinityNet, StudentConfig, build_student, student_inputs, student_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100
    warmup_epochs: int = 2
    lr: float = 1e-4
    stem_lr_scale: float = 0.1
    head_lr_scale: float = 5.0
    weight_decay: float = 1e-5
    min_lr_ratio: float = 1e-3
    augment: bool = True
    voxel_size: float = 0.02
    seed: int = 5557
    pairs: PairConfig = field(default_factory=PairConfig)
    semantic_weight: float = 0.0
    save_every: int = 1

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.warmup_epochs < 0 or self.lr <= 0 or self.voxel_size <= 0 or self.semantic_weight < 0 \
                or self.save_every < 1:
            raise ValueError(f"invalid training config {self}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return cls(**{**d, "pairs": PairConfig(**d["pairs"])})


@dataclass(frozen=True, eq=False)
class DistillScene:
    """One training scene: geometry, lifted semantics ``(N, D)`` and teacher features ``(N, Dt)``."""

    scene: Scene
    semantic: torch.Tensor
    teacher: torch.Tensor

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


@dataclass
class TrainResult:
    student: StudentAffinityNet
    history: list[dict[str, float]]
    best_epoch: int
    run_dir: Path


def _seed(*parts: int) -> int:
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (p & 0xFFFFFFFFFFFF)) * 1099511628211) & 0x7FFFFFFFFFFFFFFF
    return h


def pair_features(item: DistillScene, semantic_weight: float = 0.0) -> torch.Tensor:
    """The features whose similarities choose the pairs: the unit teacher features, optionally
    concatenated with ``semantic_weight`` times the unit lifted features (label-free; off by default,
    as upstream, whose pairs come from the teacher alone)."""
    t = torch.nn.functional.normalize(item.teacher.float(), dim=1)
    if semantic_weight <= 0:
        return t
    s = torch.nn.functional.normalize(item.semantic.float(), dim=1)
    return torch.nn.functional.normalize(torch.cat([t, semantic_weight * s], 1), dim=1)


class _SceneSampler:
    """A training scene's canonical voxel grid and its memoised :class:`~geopurify.distill.PairTable`."""

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
        """Student input, its :class:`~geopurify.sparse.SparsePyramid` and pairs; augmented when
        ``generator`` is given and enabled.
        Without a generator the pairs are a fixed draw (for validation)."""
        sc, grid = self.item.scene, self.grid
        coords, normals = sc.coords, sc.normals
        fixed = generator is None
        if fixed:
            generator = torch.Generator().manual_seed(_seed(self.config.seed, 7))
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


@torch.no_grad()
def validation_loss(student: StudentAffinityNet, samplers: Sequence[_SceneSampler]) -> float:
    """Label-free criterion: mean InfoNCE over scenes with fixed pairs, no augmentation, eval mode."""
    was = student.training
    student.eval()
    losses = []
    for smp in samplers:
        x, pyramid, pairs = smp.batch(student, None)
        losses.append(float(info_nce(student(x, pyramid), pairs, smp.config.pairs.temperature)))
    student.train(was)
    return sum(losses) / max(1, len(losses))


def _lr_lambda(config: TrainConfig, iters_per_epoch: int) -> Callable[[int], float]:
    warm = config.warmup_epochs * iters_per_epoch
    total = config.epochs * iters_per_epoch

    def f(step: int) -> float:
        if step < warm:
            return max(1e-6, (step + 1) / warm)
        t = (step - warm) / max(1, total - warm)
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return f


def _optimizer(student: StudentAffinityNet, config: TrainConfig) -> torch.optim.Optimizer:
    g = student.param_groups()
    return torch.optim.AdamW([
        {"params": g["stem"], "lr": config.lr * config.stem_lr_scale},
        {"params": g["blocks"], "lr": config.lr},
        {"params": g["head"], "lr": config.lr * config.head_lr_scale},
    ], weight_decay=config.weight_decay)


def _save(path: Path, student: StudentAffinityNet, opt: torch.optim.Optimizer, sched: Any, config: TrainConfig,
          epoch: int, history: list[dict[str, float]], best: dict[str, float], scenes: list[str]) -> None:
    ckpt = {"student": student_state(student), "train_config": config.to_dict(), "epoch": epoch,
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "history": history, "best": best,
            "scenes": scenes}
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def train_student(scenes: Sequence[DistillScene], run_dir: str | os.PathLike[str], student_config: StudentConfig,
                  config: TrainConfig = TrainConfig(), *, val_scenes: Sequence[DistillScene] | None = None,
                  device: str | torch.device = "cpu", resume: bool = True, progress: bool = True) -> TrainResult:
    """Train a student on ``scenes`` (module docstring); checkpoints go to ``run_dir``.

    With ``resume`` and an existing ``run_dir/last.pt`` from the same configuration and scenes,
    training continues after its last completed epoch.

    Raises:
        InputError: ``last.pt`` exists but was written for another configuration or scene list.
    """
    if not scenes:
        raise InputError("no training scenes")
    dims = {s.semantic.shape[1] for s in scenes}
    if dims != {student_config.semantic_dim}:
        raise InputError(f"lifted features have dims {sorted(dims)}, the student expects {student_config.semantic_dim}")
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    names = [s.name for s in scenes]
    student = build_student(student_config, seed=config.seed).to(dev)
    opt = _optimizer(student, config)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(config, len(scenes)))
    history: list[dict[str, float]] = []
    best: dict[str, float] = {"epoch": -1, "val_loss": math.inf}
    start = 0
    resumed_after = None
    last = run / "last.pt"
    if resume and last.is_file():
        try:
            ckpt = torch.load(last, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
            raise InputError(f"cannot read checkpoint to resume from ({type(exc).__name__}); "
                             "use another run folder or resume=False", last) from None
        # a checkpoint written before a field existed compares with that field's default;
        # save_every does not change the weights, so a run may resume with another one
        try:
            old_config = TrainConfig.from_dict(ckpt["train_config"])
            old_student = StudentConfig(**ckpt["student"]["config"])
        except (TypeError, KeyError, ValueError) as exc:
            raise InputError(f"has a configuration this geopurify cannot read ({type(exc).__name__}: {exc}); "
                             "use another run folder or resume=False", last) from None
        same = replace(old_config, save_every=config.save_every) == config and old_student == student_config
        if not same or ckpt["scenes"] != names:
            raise InputError("was written by a run with another configuration or scene list; "
                             "use another run folder or resume=False", last)
        student.load_state_dict(ckpt["student"]["state_dict"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        history, best, start = ckpt["history"], ckpt["best"], ckpt["epoch"] + 1
        resumed_after = int(ckpt["epoch"])
    samplers = [_SceneSampler(s, config, dev) for s in scenes]
    val = [_SceneSampler(s, config, dev) for s in val_scenes] if val_scenes else samplers
    # train.log always gets the run's INFO records, whatever the console's level
    handler = logging.FileHandler(run / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    file_log = logging.getLogger("geopurify.runlog")
    file_log.propagate = False
    file_log.setLevel(logging.INFO)
    file_log.addHandler(handler)

    def note(msg: str, *args: Any) -> None:
        log.info(msg, *args)
        file_log.info(msg, *args)
    try:
        if resumed_after is not None:
            note("resuming %s after epoch %d", run, resumed_after)
        total = config.epochs * len(scenes)
        bar = tqdm(total=total, initial=start * len(scenes), disable=not progress, desc="train", unit="it")
        losses: list[float] = []
        anchors, seconds = 0, 0.0
        for epoch in range(start, config.epochs):
            student.train()
            order = torch.randperm(len(scenes), generator=torch.Generator().manual_seed(_seed(config.seed, epoch)))
            t0 = time.perf_counter()
            for i in order.tolist():
                gen = torch.Generator().manual_seed(_seed(config.seed, epoch, i, 1))
                x, pyramid, pairs = samplers[i].batch(student, gen)
                loss = info_nce(student(x, pyramid), pairs, config.pairs.temperature)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                losses.append(float(loss.detach()))
                anchors += len(pairs.anchors)
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}",
                                anchors_s=f"{anchors / (seconds + time.perf_counter() - t0):.0f}")
            seconds += time.perf_counter() - t0
            if (epoch + 1) % config.save_every and epoch + 1 < config.epochs:
                continue
            vloss = validation_loss(student, val)
            rec = {"epoch": epoch, "loss": sum(losses) / len(losses), "val_loss": vloss, "seconds": seconds,
                   "iters_per_s": len(losses) / seconds, "anchors_per_s": anchors / seconds,
                   "lr": opt.param_groups[1]["lr"]}
            history.append(rec)
            note("epoch %d/%d: loss %.4f, val loss %.4f, %.1f s (%.2f it/s, %.0f anchors/s)", epoch + 1,
                 config.epochs, rec["loss"], vloss, seconds, rec["iters_per_s"], rec["anchors_per_s"])
            if vloss < best["val_loss"]:
                best = {"epoch": epoch, "val_loss": vloss}
                _save(run / "best.pt", student, opt, sched, config, epoch, history, best, names)
            _save(last, student, opt, sched, config, epoch, history, best, names)
            losses, anchors, seconds = [], 0, 0.0
        bar.close()
    finally:
        file_log.removeHandler(handler)
        handler.close()
    return TrainResult(student.eval(), history, int(best["epoch"]), run)


def lifted_path(features_dir: str | os.PathLike[str], scene_name: str) -> Path:
    """Where the lifted features of a scene live: ``<features_dir>/<scene name>.npz``."""
    return Path(features_dir) / f"{scene_name}.npz"


def prepare_scene(path: str | os.PathLike[str], features_dir: str | os.PathLike[str], teacher: Any,
                  cache_dir: str | os.PathLike[str] | None = None, *, layout: str | None = None,
                  lift: Callable[[Any], Any] | None = None, **load_options: Any) -> DistillScene:
    """Load a scan, its lifted features and its (cached) teacher features.

    The lifted features come from ``<features_dir>/<scene>.npz``; when that file is missing and ``lift``
    (``scan -> LiftedFeatures``) is given, they are lifted now and saved there for the next run.

    Raises:
        InputError: unreadable scan, or no lifted features and no way to make them.
    """
    from .datasets import load_scan
    from .lifting import LiftedFeatures
    from .teachers import teacher_features

    scan = load_scan(path, layout=layout, **load_options)
    scene = scan.scene
    fpath = lifted_path(features_dir, scene.name)
    if fpath.is_file():
        lifted = LiftedFeatures.load(fpath, num_points=scene.num_points)
    elif lift is not None:
        log.info("lifting features for %s (no %s yet)", scene.name, fpath)
        lifted = lift(scan)
        lifted.save(fpath)
    else:
        raise InputError(f"no lifted features for scene {scene.name!r} (run `geopurify lift` first, "
                         "or pass an encoder)", fpath)
    return DistillScene(scene, lifted.features, teacher_features(scene, teacher, cache_dir))
