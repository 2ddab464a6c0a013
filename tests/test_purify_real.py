"""Distillation and purification on real ScanNet geometry (../shared/data/scannet50k).

Lifted features are a stand-in made from the ground truth (fixed random class prototypes, noise, and
boundary / point flips: :func:`geopurify.sim.noisy_class_features`), since no vision-language weights
are available here. Instance and class labels are used for evaluation only; training is label-free.
"""

import subprocess
import sys

import numpy as np
import pytest
import torch

from geopurify.evaluation import affinity_purity, voxel_mode
from geopurify.evaluation.evaluate import evaluate
from geopurify.geometry import voxelize
from geopurify.io import load_scan
from geopurify.labels import SCANNET20
from geopurify.lifting import LiftedFeatures
from geopurify.segment import Segmenter
from geopurify.sim import class_prototypes, noisy_class_features
from geopurify.student import DistillScene, TrainConfig, train_student
from geopurify.student.distill import PairConfig
from geopurify.student.network import student_config
from geopurify.teachers import get_teacher, teacher_features

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]
TRAIN = ["scene0000_00", "scene0002_00", "scene0004_00"]
TEST = ["scene0005_00", "scene0006_00"]
DIM = 32


def lifted_for(scene, seed):
    f, _ = noisy_class_features(scene, DIM, seed=seed)
    n = scene.num_points
    return LiftedFeatures(f, torch.ones(n, dtype=torch.bool), torch.ones(n, dtype=torch.int32), "sim")


@pytest.fixture(scope="module")
def trained(shared_data, tmp_path_factory):
    teacher = get_teacher("geometric")
    scenes = {n: load_scan(shared_data / "scannet50k" / n).scene for n in TRAIN + TEST}
    lifted = {n: lifted_for(s, i) for i, (n, s) in enumerate(scenes.items())}
    items = [DistillScene(scenes[n], lifted[n].features, teacher_features(scenes[n], teacher)) for n in TRAIN]
    run = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(epochs=4, warmup_epochs=1, lr=1e-3, pairs=PairConfig(anchors=2048))
    result = train_student(items, run, student_config("cpu", DIM, norm="layer"), cfg, progress=False)
    return scenes, lifted, result, run, teacher


def test_training_lowers_the_loss(trained):
    h = trained[2].history
    assert h[-1]["loss"] < 0.8 * h[0]["loss"]
    assert h[-1]["val_loss"] < h[0]["val_loss"]


def test_student_affinities_follow_instances_on_unseen_scenes(trained):
    scenes, lifted, result, _, teacher = trained
    for n in TEST:
        s = scenes[n]
        grid = voxelize(s.coords, 0.02)
        inst = voxel_mode(s.instances, grid.inverse, grid.num_voxels)
        emb = result.student.embed(grid, lifted[n].features, s.colors, s.normals)
        uniform = affinity_purity(None, grid.centers, inst)
        student = affinity_purity(emb, grid.centers, inst)
        print(n, "purity uniform", round(uniform, 3), "student", round(student, 3))
        assert student > uniform + 0.05


def test_purification_raises_miou_on_unseen_scenes(trained):
    scenes, lifted, result, _, _ = trained
    text = class_prototypes(SCANNET20.num_classes + 1, DIM)[SCANNET20.scored.nonzero().flatten()]
    ev = evaluate([(scenes[n], lifted[n]) for n in TEST], SCANNET20, segmenter=Segmenter(), student=result.student,
                  text_embeddings=text)
    direct, purified = ev.scores("direct").miou, ev.scores("purified").miou
    print(ev.table())
    assert purified > direct + 0.03


def test_cli_segment_and_evaluate(trained, shared_data, tmp_path):
    scenes, lifted, _, run, _ = trained
    feats = tmp_path / "features"
    for n in TEST:
        lifted[n].save(feats / f"{n}.npz")
    text = class_prototypes(SCANNET20.num_classes + 1, DIM)[SCANNET20.scored.nonzero().flatten()]
    np.save(tmp_path / "text.npy", text.numpy())
    paths = [str(shared_data / "scannet50k" / n) for n in TEST]
    cli = [sys.executable, "-m", "geopurify.cli"]
    out = subprocess.run([*cli, "segment", paths[0], "--features", str(feats / f"{TEST[0]}.npz"), "--vocab", "scannet20",
                          "--student", str(run / "best.pt"), "--text-embeddings", str(tmp_path / "text.npy"),
                          "--out", str(tmp_path / "seg")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    labels = np.load(tmp_path / "seg" / f"{TEST[0]}_labels.npy")
    assert labels.shape == (scenes[TEST[0]].num_points,) and labels.min() >= 0 and labels.max() < 19
    assert (tmp_path / "seg" / f"{TEST[0]}_labels.ply").is_file()
    assert (tmp_path / "seg" / f"{TEST[0]}_summary.json").is_file()
    out = subprocess.run([*cli, "evaluate", *paths, "--features", str(feats), "--student", str(run / "best.pt"),
                          "--text-embeddings", str(tmp_path / "text.npy"), "--out", str(tmp_path / "eval.json")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "| purified | all |" in out.stdout and "| direct | seen |" in out.stdout
    assert (tmp_path / "eval.json").is_file()
    short = lifted[TEST[1]]
    LiftedFeatures(short.features[:10], short.seen[:10], short.view_counts[:10], "sim").save(tmp_path / "short.npz")
    bad = subprocess.run([*cli, "segment", paths[0], "--features", str(tmp_path / "short.npz"), "--vocab",
                          "scannet20", "--text-embeddings", str(tmp_path / "text.npy"), "--out", str(tmp_path / "x")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "points but the scene has" in bad.stderr
