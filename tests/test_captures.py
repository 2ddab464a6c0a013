"""Phone and RGB-D capture formats (nerfstudio, Stray Scanner, ARKitScenes, Replica): each written from the
real 7-Scenes frames by a writer that follows the format's own documentation (tests/capture_writers.py),
read back through ``load_scan``, and compared with the source; plus known answers from each format's
documented conventions, and bad input."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from capture_writers import (
    REPLICA_K,
    replica_pixels,
    write_arkitscenes,
    write_nerfstudio,
    write_record3d,
    write_record3d_export,
    write_replica,
    write_strayscanner,
)
from geopurify.camera import backproject_depth, camera_to_world, pose_matrix, project, world_to_camera
from geopurify.errors import InputError
from geopurify.geometry import knn
from geopurify.io import Frame, load_scan, write_ply
from geopurify.io.layouts import read_nerfstudio_frames, read_sevenscenes_frames
from scan_trees import look_down_pose

WRITERS = {"nerfstudio": write_nerfstudio, "strayscanner": write_strayscanner, "arkitscenes": write_arkitscenes,
           "replica": write_replica, "record3d": write_record3d, "record3d-exr": write_record3d_export}
SUBSAMPLE = 4          # depth pixels for the surface checks
# 7-Scenes rotations are orthonormal to ~1e-4 only; formats storing a quaternion or axis-angle store the
# nearest rotation, so their poses come back within that (matrix formats: exactly)
# (ARKit: also t = -R^T t_w2c through that R)
POSE_ATOL = {"strayscanner": 2e-4, "record3d": 2e-4, "record3d-exr": 2e-4, "arkitscenes": 1e-3}


@pytest.fixture(scope="module")
def source(shared_data):
    """The ten frames 7-Scenes' native cloud is fused from (every 10th of the 100), loaded, and that cloud."""
    frames = read_sevenscenes_frames(shared_data / "sevenscenes_redkitchen").subsample(10)
    loaded = [f for f in frames]
    native = load_scan(shared_data / "sevenscenes_redkitchen").scene
    return loaded, native


def _world_points(frame, step: int = SUBSAMPLE) -> torch.Tensor:
    depth = torch.zeros_like(frame.depth)
    depth[::step, ::step] = frame.depth[::step, ::step]
    pts, _ = backproject_depth(depth, frame.depth_intrinsics)
    return camera_to_world(pts, torch.from_numpy(frame.cam_to_world))


def median_mutual_nn(a: torch.Tensor, b: torch.Tensor) -> float:
    """Median distance over mutual nearest-neighbour pairs between two clouds (metres)."""
    d_ab, i_ab = knn(a, b, 1)
    _, i_ba = knn(b, a, 1)
    mutual = i_ba[i_ab[:, 0], 0] == torch.arange(len(a))
    assert int(mutual.sum()) > 1000
    return float(d_ab[mutual, 0].median())


def chamfer(a: torch.Tensor, b: torch.Tensor) -> float:
    """Symmetric mean nearest-neighbour distance (metres)."""
    return 0.5 * (float(knn(a, b, 1)[0].mean()) + float(knn(b, a, 1)[0].mean()))


@pytest.mark.shared_data
@pytest.mark.parametrize("layout", list(WRITERS))
def test_capture_round_trip_from_real_frames(layout, source, tmp_path):
    pytest.importorskip({"record3d": "lzfse", "record3d-exr": "OpenEXR"}.get(layout, "numpy"))
    frames, native = source
    root = tmp_path / {"arkitscenes": "41069025", "record3d": "scan.r3d"}.get(layout, "scene")
    WRITERS[layout](root, frames)
    scan = load_scan(root, cloud_frame_step=1)
    assert scan.layout == layout and len(scan.frames) == len(frames)
    got = list(scan.frames)
    for f, g in zip(frames, got):
        np.testing.assert_allclose(g.cam_to_world, f.cam_to_world, atol=POSE_ATOL.get(layout, 1e-6))
        if layout == "replica":                                      # re-rendered into Replica's own camera
            np.testing.assert_allclose(g.intrinsics, REPLICA_K)
            r, c, inside = replica_pixels(f.depth_intrinsics, (f.depth.shape[1], f.depth.shape[0]))
            want = np.where(inside, f.depth.numpy()[r, c], 0)
            np.testing.assert_allclose(g.depth.numpy(), want, atol=0.5 / 6553.5 + 1e-6)
        else:
            np.testing.assert_allclose(g.intrinsics, f.intrinsics, atol=1e-6)
            np.testing.assert_allclose(g.depth_intrinsics, f.depth_intrinsics, atol=1e-6)
            np.testing.assert_allclose(g.depth.numpy(), f.depth.numpy(), atol=1e-6)
            if layout.startswith("record3d"):                        # JPEG
                assert float((g.image.float() - f.image.float()).abs().mean()) < 3
            else:
                assert torch.equal(g.image, f.image)
    # two neighbouring frames' depth, back-projected with the returned poses, lands on one surface
    assert median_mutual_nn(_world_points(got[0]), _world_points(got[1])) < 0.02
    # the fused cloud is the native 7-Scenes cloud
    assert chamfer(scan.scene.coords, native.coords) < 0.02
    assert scan.normals_estimated and scan.scene.num_points > 10_000


# --- known answers from each format's documented convention ----------------------------------------


def _tiny_frames(n: int = 3) -> list[Frame]:
    """Synthetic 40x30 frames facing a wall 1.5 m away, cameras 0.1 m apart along x."""
    rng = np.random.default_rng(0)
    K = np.array([[40.0, 0, 19.5], [0, 40.0, 14.5], [0, 0, 1]])
    return [Frame(f"f{i}", torch.from_numpy(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)), K,
                  look_down_pose(0.1 * i, 0.0, 1.5), torch.full((30, 40), 1.5)) for i in range(n)]


def test_nerfstudio_known_answer_opengl_camera(tmp_path):
    """docs.nerf.studio data conventions: an identity ``transform_matrix`` is a camera at the origin looking
    down world -Z with +Y up, so a point 2 m ahead and 0.5 m up is seen above the principal point."""
    f = _tiny_frames(1)[0]
    write_nerfstudio(tmp_path, [f])
    meta = json.loads((tmp_path / "transforms.json").read_text())
    meta["frames"][0]["transform_matrix"] = np.eye(4).tolist()
    meta["frames"][0].update({"fl_x": 50.0, "fl_y": 50.0})          # per-frame intrinsics win over global ones
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    frame = load_scan(tmp_path).frames[0]
    np.testing.assert_allclose(frame.cam_to_world[:3, :3], np.diag([1.0, -1.0, -1.0]))
    uv = project(world_to_camera(torch.tensor([[0.0, 0.5, -2.0]], dtype=torch.float64), frame.cam_to_world),
                 frame.intrinsics)
    np.testing.assert_allclose(uv[0].numpy(), [19.5, 14.5 - 50.0 * 0.25])


def test_nerfstudio_ply_is_moved_by_applied_transform(tmp_path):
    """nerfstudio's dataparser: ``applied_transform`` maps original data coordinates (the PLY's) to the saved
    coordinates of the poses; COLMAP exports use ``[[0,1,0,0],[1,0,0,0],[0,0,-1,0]]``."""
    frames = _tiny_frames(2)
    xyz = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.25], [0.0, 0.0, 1.0]])
    write_ply(tmp_path / "sparse_pc.ply", xyz, rgb=np.full((3, 3), 128, np.uint8))
    write_nerfstudio(tmp_path, frames, extra={"ply_file_path": "sparse_pc.ply",
                                              "applied_transform": [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, -1, 0]]})
    scan = load_scan(tmp_path / "transforms.json")
    assert scan.layout == "nerfstudio" and len(scan.frames) == 2
    np.testing.assert_allclose(scan.scene.coords.numpy(), xyz[:, [1, 0, 2]] * [1, 1, -1], atol=1e-6)


def test_strayscanner_known_answer_from_the_apps_encoder(tmp_path):
    """Stray Scanner's OdometryEncoder.swift writes ``q_WA * q_AC`` with ``q_AC = (1, 0, 0, 0)``: an ARKit
    camera at the identity (looking down world -z, y up) is the row ``qx = 1``, which must read as an
    OpenCV camera looking down -z with image rows along -y."""
    write_strayscanner(tmp_path, _tiny_frames(2))
    rows = (tmp_path / "odometry.csv").read_text().splitlines()
    rows[1] = "0.0, 0, 0.5, 1.0, 2.0, 1.0, 0.0, 0.0, 0.0"
    (tmp_path / "odometry.csv").write_text("\n".join(rows) + "\n")
    frame = load_scan(tmp_path).frames[0]
    np.testing.assert_allclose(frame.cam_to_world, pose_matrix(np.diag([1.0, -1.0, -1.0]), [0.5, 1.0, 2.0]), atol=1e-12)
    np.testing.assert_allclose(frame.intrinsics, _tiny_frames(1)[0].intrinsics, atol=1e-9)  # K of 1920x1440, scaled


def test_arkitscenes_known_answer_world_to_camera(tmp_path):
    """tenFpsDataLoader.py: a ``.traj`` line is world-to-camera (axis-angle, translation) and is inverted.
    A quarter turn about z with translation (1, 0, 0) puts the camera centre at -R^T t = (0, 1, 0)."""
    root = tmp_path / "41069025"
    write_arkitscenes(root, _tiny_frames(2))
    lines = (root / "lowres_wide.traj").read_text().splitlines()
    lines[0] = lines[0].split()[0] + f" 0 0 {np.pi / 2!r} 1 0 0"
    (root / "lowres_wide.traj").write_text("\n".join(lines) + "\n")
    scan = load_scan(root)
    T = scan.frames[0].cam_to_world
    np.testing.assert_allclose(T[:3, 3], [0.0, 1.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(T[:3, :3], np.array([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]]), atol=1e-9)


def test_replica_known_answer_config_camera(tmp_path):
    """NICE-SLAM's replica.yaml: 1200x680, fx = fy = 600, cx 599.5, cy 339.5, depth PNG / 6553.5 = metres."""
    write_replica(tmp_path, _tiny_frames(2))
    Image.fromarray(np.full((680, 1200), 13107, np.uint16)).save(tmp_path / "results" / "depth000000.png")
    scan = load_scan(tmp_path, cloud_frame_step=1)
    f = scan.frames[0]
    assert f.size == (1200, 680)
    np.testing.assert_allclose(f.intrinsics, [[600, 0, 599.5], [0, 600, 339.5], [0, 0, 1]])
    np.testing.assert_allclose(f.depth.numpy(), 2.0)
    np.testing.assert_allclose(f.cam_to_world, _tiny_frames(1)[0].cam_to_world)


# --- bad input: one line naming the file ------------------------------------------------------------


def _nerfstudio(tmp_path, **frame0):
    write_nerfstudio(tmp_path, _tiny_frames(3))
    meta = json.loads((tmp_path / "transforms.json").read_text())
    meta["frames"][0].update(frame0)
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    return tmp_path / "transforms.json"


@pytest.mark.parametrize("change, message", [
    ({"file_path": "images/nope.png"}, r"nope\.png: image listed in transforms\.json is missing"),
    ({"camera_model": "OPENCV_FISHEYE"}, r"transforms\.json: frames\[0\].*camera_model 'OPENCV_FISHEYE' is not supported"),
    ({"k1": 0.1}, r"transforms\.json: .*non-zero distortion \(k1=0\.1\)"),
])
def test_nerfstudio_bad_input(tmp_path, change, message):
    _nerfstudio(tmp_path, **change)
    with pytest.raises(InputError, match=message) as exc:
        load_scan(tmp_path)
    assert "\n" not in str(exc.value)


def test_bad_poses_are_skipped_and_counted(tmp_path, caplog):
    m = np.eye(4)
    m[0, 0] = 2.0                                                        # not rigid
    _nerfstudio(tmp_path, transform_matrix=m.tolist())
    meta = json.loads((tmp_path / "transforms.json").read_text())
    meta["frames"][1]["transform_matrix"] = [[float("nan")] * 4] * 4
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="geopurify.io"):
        scan = load_scan(tmp_path)
    assert len(scan.frames) == 1 and "skipped 2 of 3 frames" in caplog.text
    meta["frames"][2]["transform_matrix"] = "oops"
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match=r"transforms\.json: none of the 3 poses is a finite rigid transform"):
        load_scan(tmp_path)


def test_capture_bad_input_names_the_file(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "transforms.json").write_text("{not json")
    with pytest.raises(InputError, match=r"transforms\.json: not valid JSON"):
        load_scan(tmp_path / "bad")
    stray = tmp_path / "stray"
    write_strayscanner(stray, _tiny_frames(2))
    (stray / "depth" / "000001.npy").unlink()
    with pytest.raises(InputError, match=r"depth: frame 1 is listed in odometry\.csv but depth/000001"):
        load_scan(stray)
    for p in (stray / "rgb").iterdir():
        p.unlink()
    (stray / "rgb").rmdir()
    (stray / "rgb.mp4").write_bytes(b"")
    with pytest.raises(InputError, match=r"no rgb/ folder .*ffmpeg -i rgb\.mp4"):
        load_scan(stray)
    ark = tmp_path / "41069025"
    write_arkitscenes(ark, _tiny_frames(2), traj_offset=0.02)
    with pytest.raises(InputError, match=r"41069025_1234\.500\.png: no pose in lowres_wide\.traj within 5 ms"):
        load_scan(ark)
    rep = tmp_path / "room0"
    write_replica(rep, _tiny_frames(2))
    (rep / "results" / "frame000001.jpg").unlink()
    with pytest.raises(InputError, match=r"results: traj\.txt has 2 poses but results/ holds 1 frame"):
        load_scan(rep)


def test_record3d_known_answer_and_bad_files(tmp_path):
    """ConceptGraphs' preprocess_r3d_file.py: ``K`` is stored column-major (``reshape(3, 3).T``); a pose
    ``[0, 0, 0, 1, tx, ty, tz]`` (identity quaternion) is an ARKit camera looking down world -z."""
    pytest.importorskip("lzfse")
    frames = _tiny_frames(2)
    write_record3d(tmp_path / "a.r3d", frames, meta_extra={"K": [40.0, 0, 0, 0, 41.0, 0, 19.5, 14.5, 1],
                                                          "poses": [[0, 0, 0, 1, 1, 2, 3], [0, 0, 0, 1, 0, 0, 0]]})
    f = load_scan(tmp_path / "a.r3d", cloud_frame_step=1).frames[0]
    np.testing.assert_allclose(f.intrinsics, [[40, 0, 19.5], [0, 41, 14.5], [0, 0, 1]])
    np.testing.assert_allclose(f.cam_to_world, pose_matrix(np.diag([1.0, -1.0, -1.0]), [1, 2, 3]))
    np.testing.assert_allclose(f.depth.numpy(), 1.5)
    (tmp_path / "b.r3d").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(InputError, match=r"b\.r3d: not a Record3D \.r3d file: not a zip archive"):
        load_scan(tmp_path / "b.r3d")
    import zipfile
    with zipfile.ZipFile(tmp_path / "c.r3d", "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(InputError, match=r"c\.r3d: not a Record3D \.r3d file: the zip has no 'metadata' entry"):
        load_scan(tmp_path / "c.r3d")
    with zipfile.ZipFile(tmp_path / "a.r3d") as src, zipfile.ZipFile(tmp_path / "d.r3d", "w") as z:
        for item in src.namelist():
            if item != "rgbd/1.depth":
                z.writestr(item, src.read(item))
    scan = load_scan(tmp_path / "d.r3d", layout="record3d", cloud_frame_step=5)
    with pytest.raises(InputError, match=r"d\.r3d: rgbd/1\.depth is listed in metadata but missing"):
        scan.frames[1]


@pytest.mark.parametrize(("module", "writer", "name"), [("lzfse", write_record3d, "a.r3d"),
                                                     ("OpenEXR", write_record3d_export, "export")])
def test_record3d_without_its_decoder_names_the_extra(module, writer, name, tmp_path, monkeypatch):
    pytest.importorskip(module)
    import sys

    from geopurify.errors import MissingDependencyError

    writer(tmp_path / name, _tiny_frames(1))
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'geopurify\[capture\]'"):
        load_scan(tmp_path / name)


def test_record3d_export_known_answer_and_bad_folders(tmp_path, capsys):
    """The EXR + JPG export as nerfstudio's ProcessRecord3D reads it: ``metadata.json`` ``K`` column-major
    (``reshape(3, 3).T``; used as stored, not nerfstudio's ``cx, cy = w/2, h/2``), an identity quaternion is an
    ARKit camera looking down world -z; ``depth/<i>.exr`` holds metres at its own (here half) resolution."""
    pytest.importorskip("OpenEXR")
    from geopurify.cli import main

    frames = [Frame(f.name, f.image, f.intrinsics, f.cam_to_world, torch.full((15, 20), 1.25)) for f in _tiny_frames(2)]
    root = tmp_path / "export"
    write_record3d_export(root, frames, meta_extra={"K": [40.0, 0, 0, 0, 41.0, 0, 17.5, 12.5, 1],
                                                    "poses": [[0, 0, 0, 1, 1, 2, 3], [0, 0, 0, 1, 0, 0, 0]]})
    scan = load_scan(root, cloud_frame_step=1)
    assert scan.layout == "record3d-exr" and len(scan.frames) == 2
    f = scan.frames[0]
    np.testing.assert_allclose(f.intrinsics, [[40, 0, 17.5], [0, 41, 12.5], [0, 0, 1]])
    np.testing.assert_allclose(f.depth_intrinsics, [[20, 0, 8.5], [0, 20.5, 6], [0, 0, 1]])   # (c + 0.5) / 2 - 0.5
    np.testing.assert_allclose(f.cam_to_world, pose_matrix(np.diag([1.0, -1.0, -1.0]), [1, 2, 3]))
    np.testing.assert_allclose(f.depth.numpy(), 1.25)
    # each camera sees a wall 1.25 m down its -z: camera 0 (at z = 3) at z = 1.75, camera 1 (origin) at -1.25
    z = scan.scene.coords[:, 2].numpy()
    np.testing.assert_allclose(np.unique(z.round(5)), [-1.25, 1.75])
    assert main(["info", str(root)]) == 0
    out = capsys.readouterr().out
    assert "layout record3d-exr" in out and "frames     2 (with depth: yes)" in out and "depth 20x15" in out

    (root / "depth" / "1.exr").unlink()
    with pytest.raises(InputError, match=r"export/depth/1\.exr: frame 1 listed in metadata\.json is missing$"):
        load_scan(root)
    meta = json.loads((root / "metadata.json").read_text())
    del meta["poses"]
    (root / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match=r"metadata\.json: Record3D metadata lacks poses$"):
        load_scan(root)
    (root / "metadata.json").write_text("{")
    with pytest.raises(InputError, match=r"metadata\.json: not valid JSON"):
        load_scan(root)
    (root / "depth" / "0.exr").write_bytes(b"not an exr")
    meta["poses"] = [[0, 0, 0, 1, 0, 0, 0]]
    (root / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match=r"depth/0\.exr: not a readable OpenEXR file"):
        load_scan(root)


def test_nerfstudio_intrinsics_follow_downscaled_images(tmp_path):
    """ns-process-data writes ``fl_x ... w h`` of the full-resolution images; frames read from half-size images
    get the intrinsics of their own size (pixel centres at integers: ``c' = (c + 0.5) / 2 - 0.5``)."""
    f = _tiny_frames(1)[0]
    write_nerfstudio(tmp_path, [f], depth=False)
    meta = json.loads((tmp_path / "transforms.json").read_text())
    meta.update({"fl_x": 80.0, "fl_y": 80.0, "cx": 39.5, "cy": 29.5, "w": 80, "h": 60})   # full size: 80x60
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    frame = read_nerfstudio_frames(tmp_path)[0]                                    # no depth: frames only
    np.testing.assert_allclose(frame.intrinsics, f.intrinsics)                    # the 40x30 file's own K
