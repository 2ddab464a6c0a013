"""Data-parallel training over scenes with ``torch.distributed``, as ``torchrun`` launches it.

Under ``torchrun --nproc_per_node N`` (or ``--nnodes``) every process gets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`train_student <geopurify.student.train.train_student>` then joins the process group
(NCCL on CUDA, gloo on CPU), runs on ``cuda:<LOCAL_RANK>`` when the device is CUDA, and each step:

* every rank takes its own scene of the epoch's shuffled order: step ``t`` of rank ``r`` draws scene
  ``order[(t * N + r) % S]``, so an epoch has ``ceil(S / N)`` steps (the last step wraps around when ``N``
  does not divide ``S``; the random draws of a scene are those of a single-process run);
* computes that scene's loss and gradients; the gradients are averaged over ranks (one all-reduce, the
  mean of the ranks' losses' gradients: exactly what DistributedDataParallel computes), so every rank
  takes the same optimiser step and all ranks hold the same weights;
* normalisation statistics (BatchNorm running means) are averaged over ranks before validating and saving.

The **effective batch is N scenes per step** and an epoch has N times fewer steps; the learning rate is
not changed (the schedule is per step, so warm-up and decay follow the shorter epochs). With N scenes per
step the gradient is less noisy; the linear scaling rule (``--lr`` times N) is a starting point to try,
not a default. Validation scenes are split over ranks and their losses averaged. Rank 0 alone locks the
run folder and writes ``last.pt``, ``best.pt`` and ``train.log``; every rank resumes from ``last.pt``, so
the run folder must be on a file system all nodes share.

The gradients are averaged explicitly after ``backward`` rather than by wrapping the student in
``DistributedDataParallel``: the student's forward takes a per-scene sparse pyramid and the sampler calls
its methods directly, and the explicit all-reduce gives the same average with no bucketing or buffer
broadcasts to reason about.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ranks:
    """This process's place in the group: ``rank`` of ``world`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes checkpoints and logs."""
        return self.rank == 0

    def scene_at(self, order: list[int], step: int) -> int:
        """The scene this rank trains on at ``step`` of an epoch with shuffled ``order`` (module docstring)."""
        return order[(step * self.world + self.rank) % len(order)]

    def steps(self, num_scenes: int) -> int:
        """Steps per epoch: ``ceil(num_scenes / world)``."""
        return -(-num_scenes // self.world)


def join(device: torch.device) -> tuple[Ranks, torch.device]:
    """Join the process group that ``torchrun`` describes in the environment (or one already initialised);
    a single process without them gets ``Ranks()``. Returns the ranks and the device of this rank."""
    if not dist.is_initialized():
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return Ranks(), device
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        log.info("rank %d of %d joined (%s)", dist.get_rank(), world, backend)
    ranks = Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda" and ranks.world > 1:
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    return ranks, device


def average_gradients(module: torch.nn.Module, ranks: Ranks) -> None:
    """Replace every parameter's gradient by its mean over ranks (a parameter without a gradient on one
    rank counts as a zero gradient there), in one flat all-reduce."""
    if ranks.world <= 1:
        return
    params = [p for p in module.parameters() if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= ranks.world
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def average_buffers(module: torch.nn.Module, ranks: Ranks) -> None:
    """Average floating-point buffers (normalisation running statistics) over ranks."""
    if ranks.world <= 1:
        return
    for b in module.buffers():
        if b.is_floating_point():
            dist.all_reduce(b)
            b /= ranks.world


def mean_over_ranks(values: list[float], ranks: Ranks, device: torch.device) -> float:
    """The mean of every rank's ``values`` together (NaN when there are none at all)."""
    t = torch.tensor([sum(values), len(values)], dtype=torch.float64, device=device)
    if ranks.world > 1:
        dist.all_reduce(t)
    return float(t[0] / t[1]) if t[1] > 0 else float("nan")


def barrier(ranks: Ranks) -> None:
    if ranks.world > 1:
        dist.barrier()
