"""Run by ``torchrun --nproc_per_node 2`` from tests/test_distributed.py: ``grads OUT`` saves this rank's
averaged gradients of step 0; ``train OUT`` trains (or resumes) a small run in ``OUT/run``."""

import sys
from pathlib import Path

import torch

from geopurify.sim import make_room, noisy_class_features
from geopurify.student import DistillScene, TrainConfig, student_config, train_student
from geopurify.student.data import SceneSampler
from geopurify.student.distill import PairConfig
from geopurify.student.distributed import average_gradients, join
from geopurify.student.network import build_student
from geopurify.student.train import scene_loss
from geopurify.teachers import get_teacher, teacher_features

CONFIG = TrainConfig(epochs=2, warmup_epochs=0, lr=1e-3, pairs=PairConfig(anchors=256))


def scenes() -> list[DistillScene]:
    out = []
    for seed in (0, 1):
        room = make_room(seed=seed, density=40)
        feats, _ = noisy_class_features(room, 16, seed=seed)
        out.append(DistillScene(room, feats, teacher_features(room, get_teacher("geometric"))))
    return out


def tiny():
    return student_config("cpu", 16, hidden=16, embed_dim=16, levels=1)


def main(mode: str, out: Path) -> None:
    torch.set_num_threads(1)
    items = scenes()
    if mode == "grads":
        ranks, dev = join(torch.device("cpu"))
        student = build_student(tiny(), seed=0).train()
        i = ranks.scene_at([0, 1], 0)
        loss, _ = scene_loss(student, SceneSampler(items[i], CONFIG, dev), CONFIG.seed, 0, i)
        loss.backward()
        average_gradients(student, ranks)
        torch.save({n: p.grad for n, p in student.named_parameters()}, out / f"grads{ranks.rank}.pt")
    else:
        result = train_student(items, out / "run", tiny(), CONFIG, progress=False)
        rank = torch.distributed.get_rank()
        torch.save(result.student.state_dict(), out / f"final{rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
