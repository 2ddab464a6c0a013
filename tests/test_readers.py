import logging
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from geopurify import InputError, detect_layout, load_scan
from geopurify.io.layouts import list_scannet50k, read_frames_folder
from geopurify.io.ply import write_ply
from geopurify.labels import MATTERPORT21, SCANNET20, SCANNET200
from scan_trees import (
    K_COLOR,
    write_matrix,
    write_scannet_release,
    write_sevenscenes,
)

# ---------------------------------------------------------------- ScanNet v2 release layout


def test_scannet_release_tree(tmp_path, caplog):
    info = write_scannet_release(tmp_path / "scene0999_00")
    with caplog.at_level(logging.WARNING):
        scan = load_scan(tmp_path / "scene0999_00")
    assert scan.layout == "scannet" and scan.scene.name == "scene0999_00"
    A = info["align"]
    expect = info["xyz"] @ A[:3, :3].T + A[:3, 3]
    assert np.allclose(scan.scene.coords.numpy(), expect, atol=1e-5)
    # NYU 2 (floor) -> class 1; NYU 13 (blinds) is not a ScanNet20 class -> ignore
    assert scan.scene.labels.tolist() == [1 if k == 2 else -1 for k in info["nyu"]]
    # normals from the (upward, counter-clockwise) faces, rotated by the alignment (about z)
    assert torch.allclose(scan.scene.normals, torch.tensor([0.0, 0.0, 1.0]).expand(100, 3), atol=1e-5)
    assert not scan.normals_estimated
    # frames 0, 20, 40 kept by the default step of 20; frame 20 has an -inf pose and is skipped
    assert scan.frames.names == ["0", "40"]
    assert "skipped 1 frames with non-finite poses" in caplog.text
    assert np.allclose(scan.frames.poses[1].numpy(), A @ info["poses"][40])
    f = scan.frames[0]
    assert f.size == (130, 98) and tuple(f.depth.shape) == (48, 64)
    assert np.isclose(f.depth_intrinsics[0, 0], 59.0)  # from intrinsic_depth.txt
    assert torch.allclose(f.depth, torch.full((48, 64), 1.5))
    # other options
    assert len(load_scan(tmp_path / "scene0999_00", frame_step=1).frames) == 59
    resized = load_scan(tmp_path / "scene0999_00", image_size=(65, 49)).frames[0]
    assert resized.size == (65, 49) and np.isclose(resized.intrinsics[0, 0], 60.0)
    unaligned = load_scan(tmp_path / "scene0999_00", axis_align=False)
    assert np.allclose(unaligned.scene.coords.numpy(), info["xyz"], atol=1e-6)


def test_scannet_release_bad_inputs(tmp_path):
    root = tmp_path / "s"
    write_scannet_release(root, n_frames=21)
    (root / "depth" / "0.png").unlink()
    with pytest.raises(InputError, match=r"depth[/\\]0\.png: colour frame 0\.jpg has no depth"):
        load_scan(root)
    write_scannet_release(root, n_frames=21)
    (root / "pose" / "0.txt").unlink()
    with pytest.raises(InputError, match=r"pose[/\\]0\.txt: colour frame 0\.jpg has no pose"):
        load_scan(root)
    write_scannet_release(root, n_frames=21)
    write_matrix(root / "pose" / "0.txt", np.diag([2.0, 1, 1, 1]))
    with pytest.raises(InputError, match=r"0\.txt: pose rotation is not orthonormal"):
        load_scan(root)
    write_scannet_release(root, n_frames=21)
    write_ply(root / "scene0999_00_vh_clean_2.labels.ply", np.zeros((5, 3)), scalars={"label": np.ones(5, np.uint16)})
    with pytest.raises(InputError, match=r"labels\.ply: has 5 vertices but"):
        load_scan(root)
    write_ply(root / "scene0999_00_vh_clean_2.labels.ply", np.zeros((100, 3)),
              scalars={"label": np.full(100, 99, np.uint16)})
    with pytest.raises(InputError, match=r"labels\.ply: 100 label ids are not valid nyu40 ids"):
        load_scan(root)


def test_frame_depth_of_the_wrong_size_names_the_file(tmp_path):
    write_sevenscenes(tmp_path / "seq", depth_size=(48, 48))
    with pytest.raises(InputError, match=r"frame-000000\.depth\.png: depth is 48x48 but the colour image is 130x98"):
        read_frames_folder(tmp_path / "seq")[0]


# ---------------------------------------------------------------- 7-Scenes layout and PLY + frames


def test_ply_with_sevenscenes_frames(tmp_path, rng):
    write_sevenscenes(tmp_path / "seq", n=3)
    xyz = rng.uniform(0, 1, size=(200, 3))
    write_ply(tmp_path / "cloud.ply", xyz, rgb=rng.integers(0, 255, (200, 3)).astype(np.uint8),
              scalars={"label": np.full(200, 5, np.uint8)})
    scan = load_scan(tmp_path / "cloud.ply", frames=tmp_path / "seq")
    assert scan.layout == "ply" and len(scan.frames) == 3 and scan.normals_estimated
    assert (scan.scene.labels == SCANNET20.index("chair")).all()  # NYU 5 = chair
    f = scan.frames[2]
    assert torch.allclose(f.depth, torch.full((48, 64), 1.2)) and np.allclose(f.intrinsics, K_COLOR)
    idx = load_scan(tmp_path / "cloud.ply", label_ids="index").scene.labels
    assert (idx == 5).all()


def test_sevenscenes_bad_inputs(tmp_path):
    root = tmp_path / "seq"
    write_sevenscenes(root)
    write_matrix(root / "frame-000001.pose.txt", np.full((4, 4), np.nan))
    with pytest.raises(InputError, match=r"frame-000001\.pose\.txt: pose contains NaN"):
        read_frames_folder(root)
    write_sevenscenes(root)
    (root / "frame-000002.color.png").unlink()
    with pytest.raises(InputError, match="has a pose but no"):
        read_frames_folder(root)
    write_sevenscenes(root)
    (root / "frame-000000.depth.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(InputError, match=r"frame-000000\.depth\.png: not a readable image"):
        read_frames_folder(root)[0]
    with pytest.raises(InputError, match="not a frames folder"):
        read_frames_folder(tmp_path)


# ---------------------------------------------------------------- preprocessed layouts


def test_pth_three_and_four_tuples(tmp_path, rng):
    n = 300
    coords = rng.uniform(0, 3, (n, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (n, 3))
    labels = rng.integers(0, 20, n)
    labels[:10] = 255
    labels[10:20] = -100
    torch.save((coords, (rgb / 127.5 - 1).astype(np.float32), labels), tmp_path / "scene0001_00_vh_clean_2.pth")
    scan = load_scan(tmp_path / "scene0001_00_vh_clean_2.pth")
    assert scan.layout == "pth" and scan.scene.name == "scene0001_00" and scan.scene.label_set is SCANNET20
    assert np.allclose(scan.scene.colors.numpy(), rgb / 255.0, atol=1e-6)
    assert (scan.scene.labels[:20] == -1).all() and (scan.scene.labels[20:].numpy() == labels[20:]).all()
    normals = np.tile([[0, 0, 2.0]], (n, 1)).astype(np.float32)
    torch.save((coords, np.zeros((n, 3), np.float32), normals, rng.integers(0, 21, n)), tmp_path / "mp.pth")
    mp = load_scan(tmp_path / "mp.pth")
    assert mp.scene.label_set is MATTERPORT21 and not mp.normals_estimated
    assert torch.allclose(mp.scene.normals[:, 2], torch.ones(n))
    torch.save((coords, np.zeros((n, 3), np.float32), np.full(n, 25)), tmp_path / "bad.pth")
    with pytest.raises(InputError, match=r"bad\.pth: 300 labels are outside label set"):
        load_scan(tmp_path / "bad.pth")


class _Evil:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_pth_refuses_arbitrary_pickles(tmp_path, capsys):
    torch.save((np.zeros((3, 3)), _Evil()), tmp_path / "evil.pth")
    with pytest.raises(InputError, match=r"evil\.pth: refused to unpickle"):
        load_scan(tmp_path / "evil.pth")
    assert "arbitrary code ran" not in capsys.readouterr().out
    (tmp_path / "garbage.pth").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(InputError, match=r"garbage\.pth"):
        load_scan(tmp_path / "garbage.pth")


def test_pointcept_folder(tmp_path, rng):
    n = 200
    root = tmp_path / "scene0002_00"
    root.mkdir()
    np.save(root / "coord.npy", rng.uniform(0, 2, (n, 3)).astype(np.float32))
    np.save(root / "color.npy", rng.integers(0, 256, (n, 3)).astype(np.uint8))
    np.save(root / "normal.npy", np.tile([[1.0, 0, 0]], (n, 1)).astype(np.float32))
    seg = rng.integers(-1, 20, n)
    np.save(root / "segment20.npy", seg)
    np.save(root / "segment200.npy", rng.integers(-1, 200, n))
    np.save(root / "instance.npy", rng.integers(-1, 5, n))
    scan = load_scan(root)
    assert scan.layout == "pointcept" and scan.scene.labels.tolist() == seg.tolist()
    assert load_scan(root, label_set="scannet200").scene.label_set is SCANNET200
    np.save(root / "color.npy", rng.integers(0, 256, (n + 1, 3)).astype(np.uint8))
    with pytest.raises(InputError, match=r"color\.npy: must have shape \(200, 3\)"):
        load_scan(root)


def test_detect_layout_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        detect_layout(tmp_path / "nothing")
    with pytest.raises(InputError, match="not a known scan layout"):
        detect_layout(tmp_path)
    (tmp_path / "x.xyz").write_text("1 2 3")
    with pytest.raises(InputError, match="unknown scan file type"):
        detect_layout(tmp_path / "x.xyz")


# ---------------------------------------------------------------- real data in ../shared/data


@pytest.mark.shared_data
def test_scannet50k_real(shared_data):
    scenes = list_scannet50k(shared_data / "scannet50k")
    assert len(scenes) == 16
    scan = load_scan(scenes[0])
    s = scan.scene
    assert scan.layout == "scannet50k" and s.num_points == 50_000 and s.label_set is SCANNET20
    raw = np.load(shared_data / "scannet50k" / "scene0000_00_sem_label.npy").astype(np.int64)
    assert s.labels.tolist() == SCANNET20.map_source_ids(raw).tolist()
    ins = np.load(shared_data / "scannet50k" / "scene0000_00_ins_label.npy").astype(np.int64)
    assert (s.instances.numpy() == np.where(ins == 0, -1, ins)).all()
    # normals: floors face up, as oriented towards the room's interior
    floor = s.labels == SCANNET20.index("floor")
    assert float((s.normals[floor, 2] > 0.7).float().mean()) > 0.85
    assert float((s.normals[floor, 2] > 0).float().mean()) > 0.95


@pytest.mark.shared_data
def test_scannet_frames_json_real_alignment(shared_data):
    """Points project onto the real frames: sampled pixel colours agree with the points' own colours
    far better with the aligned poses than with the unaligned ones."""
    scan = load_scan(shared_data / "scannet_scene0000_00")
    assert scan.layout == "scannet-frames-json" and len(scan.frames) == 3
    from geopurify.camera import project, world_to_camera

    def colour_agreement(pose):
        f = scan.frames[0]
        cam = world_to_camera(scan.scene.coords.double(), torch.from_numpy(pose))
        uv = project(cam, f.intrinsics).round().long()
        W, H = f.size
        ok = (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
        # nearest surface only: keep points within 5 cm of the closest point along each 8x8 pixel cell
        cell = (uv[ok, 1] // 8) * (W // 8 + 1) + uv[ok, 0] // 8
        z = cam[ok, 2]
        zmin = torch.full((int(cell.max()) + 1,), float("inf"), dtype=z.dtype).scatter_reduce(0, cell, z, "amin")
        front = z <= zmin[cell] + 0.05
        pix = f.image[uv[ok, 1][front], uv[ok, 0][front]].double() / 255
        col = scan.scene.colors[ok][front].double()
        return float(torch.corrcoef(torch.stack([pix.mean(1), col.mean(1)]))[0, 1]), int(front.sum())

    aligned_r, n = colour_agreement(scan.frames.poses[0].numpy())
    align = np.array([[0.945519, 0.325568, 0.0, -5.38439], [-0.325568, 0.945519, 0.0, -2.87178],
                      [0.0, 0.0, 1.0, -0.06435], [0.0, 0.0, 0.0, 1.0]])
    unaligned_r, _ = colour_agreement(np.linalg.inv(align) @ scan.frames.poses[0].numpy())
    assert n > 2000
    assert aligned_r > 0.5 and aligned_r > unaligned_r + 0.3, (aligned_r, unaligned_r)


@pytest.mark.shared_data
def test_sevenscenes_real(shared_data):
    scan = load_scan(shared_data / "sevenscenes_redkitchen")
    assert scan.layout == "7scenes" and len(scan.frames) == 100 and scan.scene.num_points > 10_000
    f = scan.frames[0]
    assert f.size == (640, 480) and f.depth.shape == (480, 640)
    raw = np.asarray(Image.open(shared_data / "sevenscenes_redkitchen" / "frame-000000.depth.png")).astype(np.int64)
    valid = (raw > 0) & (raw < 65535)
    assert torch.equal(f.depth > 0, torch.from_numpy(valid))
    assert np.allclose(f.depth.numpy()[valid], raw[valid] / 1000.0)
    assert scan.frames.has_depth
