import subprocess
import sys

import numpy as np
import pytest
from scan_trees import write_scannet_release

from geopurify.cli import main
from geopurify.io.ply import read_ply, write_ply


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


def test_demo_writes_a_labelled_ply(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = read_ply(tmp_path / "room-0_gt.ply")
    assert len(out.xyz) > 40_000 and "label" in out.properties
    assert "labels     scannet20" in capsys.readouterr().out
