"""Training the student by contrastive distillation: a plain, resumable, deterministic loop.

One iteration = one scene: augment (training only), voxelise at 2 cm, build the student input on the
**whole** voxel grid, embed every voxel, sample pairs from the teacher (:mod:`geopurify.student.distill`) and
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .._fileio import RunLock, remove_stale_temporaries
from ..errors import InputError
from .checkpoint import read_checkpoint, save_training_checkpoint
from .config import TrainConfig
from .data import DistillScene, SceneSampler, common_source, seed_of
from .distill import info_nce
from .distributed import Ranks, average_buffers, average_gradients, barrier, join, mean_over_ranks
from .network import StudentAffinityNet, StudentConfig, build_student

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """The trained student (the last epoch's weights, eval mode), one history record per checkpointed
    period, the best period's epoch, the run folder and the names of the training scenes."""

    student: StudentAffinityNet
    history: list[dict[str, float]]
    best_epoch: int
    run_dir: Path
    scenes: list[str] = field(default_factory=list)


@torch.no_grad()
def validation_loss(student: StudentAffinityNet, samplers: Sequence[SceneSampler]) -> float:
    """Label-free criterion: mean InfoNCE over scenes with fixed pairs, no augmentation, eval mode."""
    losses = validation_losses(student, samplers)
    return sum(losses) / max(1, len(losses))


@torch.no_grad()
def validation_losses(student: StudentAffinityNet, samplers: Sequence[SceneSampler]) -> list[float]:
    """:func:`validation_loss` per scene."""
    was = student.training
    student.eval()
    losses = []
    try:
        for smp in samplers:
            x, pyramid, pairs = smp.batch(student, None)
            losses.append(float(info_nce(student(x, pyramid), pairs, smp.config.pairs.temperature)))
    finally:
        student.train(was)
    return losses


def scene_loss(student: StudentAffinityNet, sampler: SceneSampler, seed: int, epoch: int,
               i: int) -> tuple[torch.Tensor, int]:
    """The training loss of scene ``i`` in ``epoch`` (its random draws derive from ``(seed, epoch, i)``) and
    its number of anchors."""
    gen = torch.Generator().manual_seed(seed_of(seed, epoch, i, 1))
    x, pyramid, pairs = sampler.batch(student, gen)
    return info_nce(student(x, pyramid), pairs, sampler.config.pairs.temperature), len(pairs.anchors)


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


@dataclass
class _State:
    """Where a run stands: history, best record, first epoch to run."""

    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=lambda: {"epoch": -1, "val_loss": math.inf})
    start: int = 0


def _resume(last: Path, student: StudentAffinityNet, opt: torch.optim.Optimizer, sched: Any, config: TrainConfig,
            names: list[str]) -> _State | None:
    """Restore a run from ``last.pt`` written by the same configuration and scenes (None: nothing to resume).

    A checkpoint written before a field existed compares with that field's default; ``save_every``
    does not change the weights, so a run may resume with another one.
    """
    if not last.is_file():
        return None
    try:
        ckpt = read_checkpoint(last)
    except InputError as exc:
        raise InputError(f"cannot read checkpoint to resume from ({exc.problem}); use another run folder or "
                         "--restart (resume=False) to start afresh", last) from None
    try:
        old_config = TrainConfig.from_dict(ckpt.training["train_config"])
        old_student = ckpt.config()
    except (TypeError, KeyError, ValueError) as exc:
        raise InputError(f"has a configuration this geopurify cannot read ({type(exc).__name__}: {exc}); "
                         "use another run folder, or --restart (resume=False) to start afresh", last) from None
    same = replace(old_config, save_every=config.save_every) == config and old_student == student.config
    if not same or ckpt.training.get("scenes") != names or "optimizer" not in ckpt.training:
        raise InputError("was written by a run with another configuration or scene list; "
                         "use another run folder, or --restart (resume=False) to start afresh", last)
    student.load_state_dict(ckpt.student["state_dict"])
    opt.load_state_dict(ckpt.training["optimizer"])
    sched.load_state_dict(ckpt.training["scheduler"])
    t = ckpt.training
    return _State(t["history"], t["best"], int(t["epoch"]) + 1)


class _RunLog:
    """``train.log`` in the run folder gets the run's INFO records, whatever the console's level."""

    def __init__(self, path: Path, write: bool = True) -> None:
        self.write = write
        self.handler = logging.FileHandler(path) if write else logging.NullHandler()
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.file_log = logging.getLogger("geopurify.runlog")
        self.file_log.propagate = False
        self.file_log.setLevel(logging.INFO)

    def __enter__(self) -> _RunLog:
        self.file_log.addHandler(self.handler)
        return self

    def __exit__(self, *exc: object) -> None:
        self.file_log.removeHandler(self.handler)
        self.handler.close()

    def note(self, msg: str, *args: Any) -> None:
        if not self.write:                               # another rank than 0: rank 0 reports
            return
        log.info(msg, *args)
        self.file_log.info(msg, *args)


def train_student(scenes: Sequence[DistillScene], run_dir: str | os.PathLike[str], student_config: StudentConfig,
                  config: TrainConfig = TrainConfig(), *, val_scenes: Sequence[DistillScene] | None = None,
                  device: str | torch.device = "cpu", resume: bool = True, progress: bool = True) -> TrainResult:
    """Train a student on ``scenes`` (module docstring); checkpoints go to ``run_dir``.

    The student records ``config.voxel_size`` and the scenes' feature source (:func:`common_source`), so
    inference runs it as it was trained. With ``resume`` and an existing ``run_dir/last.pt`` from the same
    configuration and scenes, training continues after its last completed epoch.

    The run folder is locked (:class:`~geopurify._fileio.RunLock`) while training. Under ``torchrun``
    the processes train data-parallel over the scenes (:mod:`geopurify.student.distributed`); rank 0
    locks the folder and writes checkpoints and the log.

    Raises:
        InputError: ``last.pt`` exists but was written for another configuration or scene list, or another
            process is training in the folder.
    """
    if not scenes:
        raise InputError("no training scenes")
    dims = {s.semantic.shape[1] for s in scenes}
    if dims != {student_config.semantic_dim}:
        raise InputError(f"lifted features have dims {sorted(dims)}, the student expects {student_config.semantic_dim}")
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    ranks, dev = join(torch.device(device))
    if not ranks.main:
        return _train(scenes, run, student_config, config, val_scenes, dev, resume, False, ranks)
    with RunLock(run):
        for p in remove_stale_temporaries(run):
            log.warning("removed %s, left by a run that was killed while writing", p)
        barrier(ranks)                                   # the other ranks read last.pt only after this
        return _train(scenes, run, student_config, config, val_scenes, dev, resume, progress, ranks)


def _train(scenes: Sequence[DistillScene], run: Path, student_config: StudentConfig, config: TrainConfig,
           val_scenes: Sequence[DistillScene] | None, dev: torch.device, resume: bool, progress: bool,
           ranks: Ranks) -> TrainResult:
    if not ranks.main:
        barrier(ranks)
    names = [s.name for s in scenes]
    student = build_student(student_config, seed=config.seed, voxel_size=config.voxel_size,
                            features=common_source(scenes)).to(dev)
    opt = _optimizer(student, config)
    steps = ranks.steps(len(scenes))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(config, steps))
    state = _resume(run / "last.pt", student, opt, sched, config, names) if resume else None
    resumed = state is not None
    state = state or _State()
    samplers = [SceneSampler(s, config, dev) for s in scenes]
    val = [SceneSampler(s, config, dev) for s in val_scenes] if val_scenes else samplers
    val = val[ranks.rank::ranks.world]

    def save(name: str, epoch: int, with_state: bool) -> None:
        if not ranks.main:
            return
        extra = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()} if with_state else {}
        save_training_checkpoint(run / name, student, train_config=config.to_dict(), epoch=epoch,
                                 history=state.history, best=state.best, scenes=names, **extra)

    with _RunLog(run / "train.log", ranks.main) as runlog:
        if resumed:
            runlog.note("resuming %s after epoch %d", run, state.start - 1)
        bar = tqdm(total=config.epochs * steps, initial=state.start * steps, disable=not progress, desc="train",
                   unit="it")
        losses: list[float] = []
        anchors, seconds = 0, 0.0
        for epoch in range(state.start, config.epochs):
            student.train()
            order = torch.randperm(len(scenes), generator=torch.Generator().manual_seed(seed_of(config.seed, epoch)))
            t0 = time.perf_counter()
            for step in range(steps):
                i = ranks.scene_at(order.tolist(), step)
                loss, n_anchors = scene_loss(student, samplers[i], config.seed, epoch, i)
                if not bool(torch.isfinite(loss.detach())):
                    raise InputError(f"training diverged in epoch {epoch + 1}: the loss of scene {scenes[i].name!r} is "
                                     f"{float(loss.detach())} (lower the learning rate, now {config.lr:g}); the last finite "
                                     "checkpoint is kept", run)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                average_gradients(student, ranks)
                opt.step()
                sched.step()
                losses.append(float(loss.detach()))
                anchors += n_anchors
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}",
                                anchors_s=f"{anchors / (seconds + time.perf_counter() - t0):.0f}")
            seconds += time.perf_counter() - t0
            if (epoch + 1) % config.save_every and epoch + 1 < config.epochs:
                continue
            average_buffers(student, ranks)
            vloss = mean_over_ranks(validation_losses(student, val), ranks, dev)
            if not math.isfinite(vloss):
                raise InputError(f"training diverged in epoch {epoch + 1}: the validation loss is {vloss}; the last "
                                 "finite checkpoint is kept", run)
            rec = {"epoch": epoch, "loss": mean_over_ranks(losses, ranks, dev), "val_loss": vloss, "seconds": seconds,
                   "iters_per_s": len(losses) / seconds, "anchors_per_s": anchors / seconds,
                   "lr": opt.param_groups[1]["lr"]}
            state.history.append(rec)
            runlog.note("epoch %d/%d: loss %.4f, val loss %.4f, %.1f s (%.2f it/s, %.0f anchors/s)", epoch + 1,
                        config.epochs, rec["loss"], vloss, seconds, rec["iters_per_s"], rec["anchors_per_s"])
            if vloss < state.best["val_loss"]:
                state.best = {"epoch": epoch, "val_loss": vloss}
                save("best.pt", epoch, with_state=False)
            save("last.pt", epoch, with_state=True)
            barrier(ranks)
            losses, anchors, seconds = [], 0, 0.0
        bar.close()
    return TrainResult(student.eval(), state.history, int(state.best["epoch"]), run, names)
