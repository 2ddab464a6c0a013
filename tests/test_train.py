"""Training: loss goes down, determinism, checkpoints, resume after a killed run, the CLI."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from geopurify import InputError
from geopurify.geometry import voxelize
from geopurify.io.ply import write_ply
from geopurify.lifting import LiftedFeatures
from geopurify.sim import make_room, noisy_class_features
from geopurify.student import DistillScene, TrainConfig, load_student, student_config, train_student
from geopurify.student.data import pair_features
from geopurify.student.distill import PairConfig
from geopurify.student.scene_selection import label_histograms, lifted_histograms, select_scenes
from geopurify.teachers import get_teacher, teacher_features

SMALL = TrainConfig(epochs=3, warmup_epochs=1, lr=1e-3, pairs=PairConfig(anchors=512))


@pytest.fixture(scope="module")
def items():
    out = []
    teacher = get_teacher("geometric")
    for seed in (0, 1):
        room = make_room(seed=seed, density=60)
        feats, _ = noisy_class_features(room, 16, seed=seed)
        out.append(DistillScene(room, feats, teacher_features(room, teacher)))
    return out


def tiny(dim=16):
    return student_config("cpu", dim, hidden=16, embed_dim=16, norm="layer")


def test_training_reduces_loss_deterministically_and_writes_checkpoints(items, tmp_path):
    r1 = train_student(items, tmp_path / "a", tiny(), SMALL, progress=False)
    r2 = train_student(items, tmp_path / "b", tiny(), SMALL, progress=False)
    h = r1.history
    assert len(h) == 3 and h[-1]["val_loss"] < h[0]["val_loss"] and h[-1]["loss"] < h[0]["loss"]
    # same seed, same result (bitwise with one thread; several threads may sum in another order)
    for (k, v), (_, w) in zip(r1.student.state_dict().items(), r2.student.state_dict().items()):
        torch.testing.assert_close(v, w, rtol=1e-4, atol=1e-6, msg=k)
    assert (tmp_path / "a" / "train.log").read_text().count("epoch") == 3
    best = load_student(tmp_path / "a" / "best.pt")
    assert best.config == tiny()
    ckpt = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["scenes"] == [i.name for i in items]
    assert ckpt["student"]["versions"]["torch"] == str(torch.__version__)


def test_unet_student_trains_and_its_checkpoint_restores_it(items, tmp_path):
    cfg = student_config("cpu", 16, hidden=16, embed_dim=16, levels=2)
    result = train_student(items, tmp_path, cfg, SMALL, progress=False)
    h = result.history
    assert h[-1]["val_loss"] < h[0]["val_loss"]
    best = load_student(tmp_path / "best.pt")
    assert best.config.levels == 2
    scene = items[0]
    grid = voxelize(scene.scene.coords, 0.02)
    last = load_student(tmp_path / "last.pt")
    torch.testing.assert_close(last.embed(grid, scene.semantic, scene.scene.colors, scene.scene.normals),
                               result.student.embed(grid, scene.semantic, scene.scene.colors, scene.scene.normals))


def test_a_finished_run_resumes_to_nothing_and_other_configs_are_refused(items, tmp_path):
    first = train_student(items, tmp_path, tiny(), SMALL, progress=False)
    again = train_student(items, tmp_path, tiny(), SMALL, progress=False)     # resumes after the last epoch
    assert again.history == first.history
    for (k, v), (_, w) in zip(first.student.state_dict().items(), again.student.state_dict().items()):
        assert torch.equal(v, w), k
    with pytest.raises(InputError, match="another configuration"):
        train_student(items, tmp_path, tiny(), TrainConfig(epochs=4), progress=False)
    with pytest.raises(InputError, match="another configuration"):
        train_student(items[:1], tmp_path, tiny(), SMALL, progress=False)
    # a checkpoint written before a config field existed resumes (the field takes its default) ...
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    del ckpt["student"]["config"]["kernel_size"], ckpt["train_config"]["save_every"]
    torch.save(ckpt, tmp_path / "last.pt")
    assert train_student(items, tmp_path, tiny(), SMALL, progress=False).history == first.history
    # ... one with a field this version does not know is refused with a clear error
    ckpt["train_config"]["pairs"]["future_option"] = 1
    torch.save(ckpt, tmp_path / "last.pt")
    with pytest.raises(InputError, match="configuration this geopurify cannot read"):
        train_student(items, tmp_path, tiny(), SMALL, progress=False)
    (tmp_path / "last.pt").write_bytes(b"garbage")
    with pytest.raises(InputError, match="cannot read checkpoint to resume from"):
        train_student(items, tmp_path, tiny(), SMALL, progress=False)


def test_save_every_checkpoints_periods_and_gives_the_same_weights(items, tmp_path):
    every = train_student(items, tmp_path / "every", tiny(), SMALL, progress=False)
    cfg = TrainConfig(**{**SMALL.__dict__, "save_every": 2})
    sparse = train_student(items, tmp_path / "sparse", tiny(), cfg, progress=False)
    # one record per period: epochs 1-2, then the last (epoch 3 alone); the mean loss covers the period
    assert [h["epoch"] for h in sparse.history] == [1, 2]
    assert sparse.history[0]["loss"] == pytest.approx((every.history[0]["loss"] + every.history[1]["loss"]) / 2,
                                                      rel=1e-4)
    assert sparse.history[1]["val_loss"] == pytest.approx(every.history[2]["val_loss"], rel=1e-4)
    for (k, v), (_, w) in zip(every.student.state_dict().items(), sparse.student.state_dict().items()):
        torch.testing.assert_close(v, w, rtol=1e-4, atol=1e-6, msg=k)
    # save_every does not change the weights: a finished run resumes with another value
    again = train_student(items, tmp_path / "sparse", tiny(), SMALL, progress=False)
    assert again.history == sparse.history
    with pytest.raises(ValueError, match="invalid training config"):
        TrainConfig(save_every=0)


def test_errors(items, tmp_path):
    with pytest.raises(InputError, match="no training scenes"):
        train_student([], tmp_path, tiny(), SMALL)
    with pytest.raises(InputError, match="expects 8"):
        train_student(items, tmp_path, tiny(8), SMALL)
    with pytest.raises(InputError, match=r"expected \("):
        DistillScene(items[0].scene, items[0].semantic[:5], items[0].teacher)


def test_scene_selection_rules():
    # 6 scenes: 3 diverse (many balanced classes), 3 dull (one class)
    labels = [torch.arange(600) % 6 for _ in range(3)] + [torch.zeros(600, dtype=torch.int64) for _ in range(3)]
    picked = select_scenes(label_histograms(labels, 6), 2)
    assert len(picked) == 2 and set(picked) <= {0, 1, 2}
    assert select_scenes(label_histograms(labels, 6), 10) == list(range(6))
    g = torch.Generator().manual_seed(0)
    protos = torch.randn(6, 8, generator=g)
    feats = [protos[lab] + 0.05 * torch.randn(600, 8, generator=g) for lab in labels]
    picked = select_scenes(lifted_histograms(feats, pseudo_classes=6), 2)
    assert set(picked) <= {0, 1, 2}


def _write_scan(folder, room, feats):
    write_ply(folder / f"{room.name}.ply", room.coords.numpy(), rgb=(room.colors * 255).round().byte().numpy(),
              normals=room.normals.numpy())


@pytest.mark.slow
def test_cli_train_resumes_after_being_killed(tmp_path):
    scans, feats_dir = tmp_path / "scans", tmp_path / "features"
    scans.mkdir()
    names = []
    for seed in (0, 1):
        room = make_room(seed=seed, density=60)
        room = type(room)(**{**room.__dict__, "name": f"room{seed}"})
        _write_scan(scans, room, None)
        f, _ = noisy_class_features(room, 16, seed=seed)
        n = room.num_points
        LiftedFeatures(f, torch.ones(n, dtype=torch.bool), torch.ones(n, dtype=torch.int32), "sim").save(
            feats_dir / f"room{seed}.npz")
        names.append(str(scans / f"room{seed}.ply"))
    (scans / "list.txt").write_text("room0.ply\nroom1.ply\n")

    def cmd(out, *extra):
        return [sys.executable, "-m", "geopurify.cli", "train", str(scans / "list.txt"), *extra,
                "--features", str(feats_dir), "--out", str(out), "--epochs", "6", "--warmup-epochs", "1",
                "--lr", "1e-3", "--anchors", "256", "--norm", "layer", "--levels", "1", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = subprocess.run(cmd(tmp_path / "ref"), capture_output=True, text=True, env=env)
    assert ref.returncode == 0, ref.stderr
    assert "trained on 2 scenes for 6 epochs" in ref.stdout

    run = tmp_path / "killed"
    proc = subprocess.Popen(cmd(run), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    while not (run / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = torch.load(run / "last.pt", weights_only=True)["epoch"]
    assert done < 5
    resumed = subprocess.run(cmd(run), capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {run} after epoch {done}" in resumed.stderr
    a = torch.load(tmp_path / "ref" / "last.pt", weights_only=True)
    b = torch.load(run / "last.pt", weights_only=True)
    assert [h["loss"] for h in a["history"]] == pytest.approx([h["loss"] for h in b["history"]], rel=1e-5)
    for k, v in a["student"]["state_dict"].items():
        torch.testing.assert_close(b["student"]["state_dict"][k], v, rtol=1e-5, atol=1e-6)
    # bad input: a scene without lifted features
    (scans / "room2.ply").write_bytes((scans / "room0.ply").read_bytes())
    bad = subprocess.run(cmd(tmp_path / "bad", str(scans / "room2.ply")), capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "room2.npz: no lifted features for scene 'room2'" in bad.stderr


def test_pair_features_optionally_add_the_lifted_semantics(items):
    item = items[0]
    torch.testing.assert_close(pair_features(item), torch.nn.functional.normalize(item.teacher, dim=1))
    both = pair_features(item, 0.7)
    dt = item.teacher.shape[1]
    assert both.shape == (item.scene.num_points, dt + item.semantic.shape[1])
    torch.testing.assert_close(both.norm(dim=1), torch.ones(len(both)))
    ratio = both[:, dt:].norm(dim=1) / both[:, :dt].norm(dim=1)
    torch.testing.assert_close(ratio, torch.full_like(ratio, 0.7))
