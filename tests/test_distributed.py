"""Training under torchrun: 2 gloo processes on CPU average the gradients of their scenes exactly as one
process averaging both scenes' losses; rank 0 writes the run; every rank ends with the same weights; resume."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ddp_worker import CONFIG, scenes, tiny
from geopurify.student.checkpoint import read_checkpoint
from geopurify.student.data import SceneSampler
from geopurify.student.distributed import Ranks
from geopurify.student.network import build_student
from geopurify.student.train import scene_loss

pytestmark = pytest.mark.slow
WORKER = Path(__file__).with_name("ddp_worker.py")


def torchrun(*args: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = str(Path(__file__).parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                           "127.0.0.1", "--master_port", str(port), str(WORKER), *args], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_ranks_split_each_epoch():
    two = [Ranks(r, 2) for r in range(2)]
    assert [r.scene_at([3, 0, 1, 2], t) for t in range(2) for r in two] == [3, 0, 1, 2]
    assert [Ranks(r, 2).scene_at([2, 0, 1], 1) for r in range(2)] == [1, 2]      # 3 scenes: the last step wraps
    assert Ranks(0, 2).steps(3) == 2 and Ranks().steps(3) == 3


def test_two_gloo_ranks_average_gradients_as_one_process_averaging_both_losses(tmp_path):
    torchrun("grads", str(tmp_path))
    items = scenes()
    student = build_student(tiny(), seed=0).train()
    losses = [scene_loss(student, SceneSampler(items[i], CONFIG, torch.device("cpu")), CONFIG.seed, 0, i)[0]
              for i in (0, 1)]
    names, params = zip(*student.named_parameters())
    alone = torch.autograd.grad(losses[0], params, retain_graph=True, allow_unused=True)
    ((losses[0] + losses[1]) / 2).backward()
    expected = {n: p.grad for n, p in student.named_parameters()}
    differs = [n for n, g in zip(names, alone) if g is not None and not torch.allclose(g, expected[n], atol=1e-4)]
    assert len(differs) > len(names) // 2                           # one scene's gradient is not the average
    for rank in (0, 1):
        got = torch.load(tmp_path / f"grads{rank}.pt")
        assert got.keys() == expected.keys()
        for name, g in expected.items():
            assert torch.allclose(got[name], g, atol=1e-5, rtol=1e-5), name


def test_torchrun_training_writes_from_rank_0_and_resumes(tmp_path):
    torchrun("train", str(tmp_path))
    run = tmp_path / "run"
    a, b = (torch.load(tmp_path / f"final{r}.pt") for r in (0, 1))
    assert all(torch.equal(a[k], b[k]) for k in a)                  # the same steps on every rank
    history = read_checkpoint(run / "last.pt").training["history"]
    assert [h["epoch"] for h in history] == [0, 1]
    assert (run / "best.pt").is_file() and not (run / ".lock").exists()
    log = (run / "train.log").read_text()
    assert log.count("epoch 1/2") == 1 and log.count("epoch 2/2") == 1  # one writer
    torchrun("train", str(tmp_path))                                # resumes after the last epoch: nothing to do
    c = torch.load(tmp_path / "final1.pt")
    assert all(torch.equal(a[k], c[k]) for k in a) and "resuming" in (run / "train.log").read_text()
