"""Matterport3D regions with undistorted frames: a house written from the real 7-Scenes frames by a writer
that follows Matterport's ``data_organization.md`` (tests/capture_writers.py), read back through
``load_scan``; known answers for the axis flip, the region's camera selection and the category voting of
OpenScene's ``preprocess_3d_matterport.py``; and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from capture_writers import write_matterport_frames, write_matterport_region
from geopurify.camera import project, world_to_camera
from geopurify.cli import main
from geopurify.errors import InputError
from geopurify.io import Frame, load_scan
from geopurify.io.layouts import read_sevenscenes_frames
from geopurify.io.layouts.matterport import select_region_cameras
from scan_trees import look_down_pose
from test_captures import _world_points, median_mutual_nn

# a hand-written category_mapping.tsv (Matterport's columns, abridged): index -> nyu40id
TSV = ("index\traw_category\tcategory\tcount\tnyuId\tnyu40id\tnyuClass\n"
       "1\twall\twall\t10\t21\t1\twall\n"
       "2\tceiling\tceiling\t10\t4\t22\tceiling\n"
       "3\tlamp\tlamp\t5\t144\t35\tlamp\n"
       "4\tremove\tremove\t1\t\t\t\n")
# six vertices in a box around the tiny frames' cameras; the faces' category ids (see the test's table)
TINY_XYZ = np.array([[-1.0, -1, 0], [2, -1, 0], [2, 2, 0], [-1, 2, 3], [0.5, 0.5, 3], [1, 1, 1]])
TINY_FACES = np.array([[0, 1, 2], [1, 2, 3], [2, 3, 4], [0, 1, 4], [0, 3, 4], [0, 1, 4], [2, 3, 5]])
TINY_CATS = np.array([1, 2, 2, 3, -1, 3, 4])


def _tiny_frames(n: int = 3) -> list[Frame]:
    rng = np.random.default_rng(0)
    K = np.array([[40.0, 0, 19.5], [0, 40.0, 14.5], [0, 0, 1]])
    return [Frame(f"f{i}", torch.from_numpy(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)), K,
                  look_down_pose(0.1 * i, 0.0, 1.5), torch.full((30, 40), 1.5)) for i in range(n)]


def _tiny_house(tmp_path, frames=None, tsv: str | None = TSV):
    house = tmp_path / "scans" / "17DRP5sb8fy"
    write_matterport_frames(house, frames or _tiny_frames())
    region = write_matterport_region(house, TINY_XYZ, TINY_FACES, TINY_CATS)
    if tsv is not None:
        (house / "category_mapping.tsv").write_text(tsv)
    return house, region


@pytest.mark.shared_data
def test_matterport_round_trip_from_real_frames(shared_data, tmp_path):
    frames = list(read_sevenscenes_frames(shared_data / "sevenscenes_redkitchen").subsample(10))
    native = load_scan(shared_data / "sevenscenes_redkitchen").scene
    far = frames[0].cam_to_world.copy()
    far[:3, 3] += [100.0, 0, 0]                                  # a camera of another part of the house
    away = Frame("away", frames[0].image, frames[0].intrinsics, far, frames[0].depth)
    house = tmp_path / "house"
    write_matterport_frames(house, [*frames, away])
    # the region: the native cloud, plus the corners of a box around it and the cameras (7-Scenes' cloud is
    # what the cameras see, so only 2 of the 10 cameras lie inside its own box)
    xyz = native.coords.numpy().astype(np.float64)
    centres = np.stack([f.cam_to_world[:3, 3] for f in frames])
    lo, hi = np.minimum(xyz.min(0), centres.min(0)) - 0.5, np.maximum(xyz.max(0), centres.max(0)) + 0.5
    corners = np.stack(np.meshgrid(*zip(lo, hi), indexing="ij"), -1).reshape(-1, 3)
    n = len(xyz) // 3 * 3
    region = write_matterport_region(house, np.concatenate([xyz, corners]), np.arange(n).reshape(-1, 3),
                                     np.full(n // 3, -1))
    scan = load_scan(region)
    assert scan.layout == "matterport" and scan.scene.name == "house_region0"
    np.testing.assert_allclose(scan.scene.coords.numpy()[: len(xyz)], xyz, atol=1e-6)
    assert scan.scene.labels is None                            # no category_mapping.tsv anywhere
    # the cameras inside the region's box are kept, the one 100 m away is not
    assert len(scan.frames) == len(frames)
    got = list(scan.frames)
    for f, g in zip(frames, got):
        np.testing.assert_allclose(g.cam_to_world, f.cam_to_world, atol=1e-9)
        np.testing.assert_allclose(g.intrinsics, f.intrinsics, atol=1e-8)
        np.testing.assert_allclose(g.depth.numpy(), f.depth.numpy(), atol=1e-6)     # mm -> /4000 exactly
        assert float((g.image.float() - f.image.float()).abs().mean()) < 3            # JPEG
    assert median_mutual_nn(_world_points(got[0]), _world_points(got[1])) < 0.02


def test_matterport_known_answer_axis_flip(tmp_path):
    """``.conf`` poses are camera-to-world with the camera looking down -z, +y up (OpenScene negates
    columns 1 and 2): an unrotated pose sees a point 2 m along world -z and 0.5 m up above the centre."""
    house, region = _tiny_house(tmp_path)
    conf = house / "undistorted_camera_parameters" / f"{house.name}.conf"
    lines = conf.read_text().splitlines()
    T = np.eye(4)
    T[:3, 3] = [0.5, 0.5, 1.0]                                   # inside the region's box
    lines[5] = " ".join(lines[5].split()[:3] + [f"{v:g}" for v in T.ravel()])
    conf.write_text("\n".join(lines) + "\n")
    frame = load_scan(region).frames[0]
    np.testing.assert_allclose(frame.cam_to_world[:3, :3], np.diag([1.0, -1.0, -1.0]))
    uv = project(world_to_camera(torch.tensor([[0.5, 1.0, -1.0]], dtype=torch.float64), frame.cam_to_world),
                 frame.intrinsics)
    np.testing.assert_allclose(uv[0].numpy(), [19.5, 14.5 - 40.0 * 0.25])


def test_region_camera_selection_known_answer():
    lo, hi = np.zeros(3), np.ones(3)
    pos = np.array([[0.5, 0.5, 0.5], [1.0, 0.5, 0.5], [0.2, 0.9, 0.1], [2, 2, 2]])
    np.testing.assert_array_equal(select_region_cameras(pos, lo, hi), [0, 2])   # strictly inside; the face is out
    line = np.stack([np.arange(150.0, 0, -1) + 1, np.full(150, 0.5), np.full(150, 0.5)], 1)   # all outside
    np.testing.assert_array_equal(select_region_cameras(line, lo, hi), np.arange(50, 150))   # 100 nearest
    assert len(select_region_cameras(line[:7], lo, hi)) == 7


def test_matterport_category_votes_known_answer(tmp_path):
    """OpenScene's ``preprocess_3d_matterport.py``: category_id -> tsv nyu40id -> the set's class; each
    vertex takes its faces' majority, "not in the set" (-1, empty nyu40id, other classes) winning ties."""
    _, region = _tiny_house(tmp_path)
    m21 = load_scan(region)                                      # matterport21 by default
    assert m21.scene.label_set.name == "matterport21" and m21.scene.label_set.class_names[20] == "ceiling"
    assert m21.scene.labels.tolist() == [-1, -1, 20, -1, -1, -1]
    nyu = load_scan(region, label_set="nyu40")
    assert nyu.scene.label_set.class_names[34] == "lamp" and nyu.scene.label_set.class_names[21] == "ceiling"
    assert nyu.scene.labels.tolist() == [34, 34, 21, -1, 34, -1]
    # the tsv may also sit in scans/ (one copy for every house), or be passed
    moved = region.parent.parent.parent / "category_mapping.tsv"
    (region.parent.parent / "category_mapping.tsv").rename(moved)
    assert load_scan(region).scene.labels.tolist() == [-1, -1, 20, -1, -1, -1]
    other = tmp_path / "elsewhere.tsv"
    moved.rename(other)
    assert load_scan(region).scene.labels is None
    assert load_scan(region, category_mapping=other).scene.labels is not None


def test_matterport_info(tmp_path, capsys):
    _, region = _tiny_house(tmp_path)
    assert main(["info", str(region)]) == 0
    out = capsys.readouterr().out
    assert "layout matterport" in out and "17DRP5sb8fy_region0" in out


def _edit_conf(house, fn):
    conf = house / "undistorted_camera_parameters" / f"{house.name}.conf"
    conf.write_text(fn(conf.read_text().splitlines()))


@pytest.mark.parametrize("edit, message", [
    (lambda ls: "\n".join(ls[:5]), r"17DRP5sb8fy\.conf: has no 'scan' lines"),
    (lambda ls: "\n".join(ls[:4] + ls[5:]), r"17DRP5sb8fy\.conf: line 5 \(scan\): comes before any intrinsics"),
    (lambda ls: "\n".join(ls[:5] + [" ".join(ls[5].split()[:-1])]), r"\.conf: line 6 \(scan\): needs a depth name"),
    (lambda ls: "\n".join(ls[:4] + ["intrinsics_matrix 1 0 2 0 1"] + ls[5:]), r"\.conf: line 5 .*needs 9 numbers"),
])
def test_matterport_bad_conf(tmp_path, edit, message):
    house, region = _tiny_house(tmp_path)
    _edit_conf(house, edit)
    with pytest.raises(InputError, match=message) as exc:
        load_scan(region)
    assert "\n" not in str(exc.value)


def test_matterport_bad_input_names_the_file(tmp_path):
    house, region = _tiny_house(tmp_path)
    next((house / "undistorted_color_images").glob("*_i0_1.jpg")).unlink()
    with pytest.raises(InputError, match=r"0f4e3b2a_i0_1\.jpg: colour image listed in 17DRP5sb8fy\.conf is missing"):
        load_scan(region)
    house, region = _tiny_house(tmp_path / "b", tsv=TSV.replace("\tnyu40id\t", "\tnyu\t"))
    with pytest.raises(InputError, match=r"category_mapping\.tsv: needs 'index' and 'nyu40id' columns"):
        load_scan(region)
    (house / "category_mapping.tsv").write_text(TSV.replace("\t35\t", "\tlamp\t"))
    with pytest.raises(InputError, match=r"category_mapping\.tsv: line 4: index '3' / nyu40id 'lamp'"):
        load_scan(region)
    (house / "category_mapping.tsv").write_text(TSV.rsplit("4\t", 1)[0])
    with pytest.raises(InputError, match=r"region0\.ply: face category_id outside -1\.\.3"):
        load_scan(region)
    (house / "category_mapping.tsv").write_text(TSV)
    with pytest.raises(InputError, match=r"category_mapping\.tsv: label set 'scannet200' is over scannet-raw"):
        load_scan(region, label_set="scannet200")
