import numpy as np
import pytest
import torch

from geopurify import Frame, Frames, InputError, Scene
from geopurify.labels import SCANNET20
from geopurify.sim import make_room


def _scene(n=10, **kw):
    args = dict(name="s", coords=torch.rand(n, 3), colors=torch.rand(n, 3),
                normals=torch.nn.functional.normalize(torch.randn(n, 3), dim=1))
    args.update(kw)
    return Scene(**args)


def test_valid_scene_and_helpers():
    s = _scene(labels=torch.tensor([0, 1, -1, 19, 2, 3, 4, 5, 6, 7]), label_set=SCANNET20,
               instances=torch.arange(10) - 1)
    assert s.num_points == 10
    sub = s.select(torch.tensor([0, 2]))
    assert sub.labels.tolist() == [0, -1] and sub.num_points == 2
    d = s.to_point_dict()
    assert set(d) == {"coord", "color", "normal", "segment", "instance"} and float(d["color"].max()) > 1
    assert s.to("cpu").coords.device.type == "cpu"
    # numpy input is accepted without casting
    _scene(coords=np.zeros((10, 3), np.float32))


@pytest.mark.parametrize("kw,match", [
    (dict(coords=torch.rand(10, 2)), r"coords must have shape \(\*, 3\)"),
    (dict(coords=torch.rand(10, 3, dtype=torch.float64)), "dtype torch.float32"),
    (dict(coords=torch.full((10, 3), float("nan"))), "NaN"),
    (dict(colors=torch.rand(9, 3)), r"colors must have shape \(10, 3\)"),
    (dict(colors=torch.rand(10, 3) * 255), r"\[0, 1\]"),
    (dict(normals=torch.ones(10, 3)), "unit"),
    (dict(labels=torch.zeros(10, dtype=torch.int64)), "label_set"),
    (dict(labels=torch.full((10,), 20), label_set=SCANNET20), "outside label set"),
    (dict(labels=torch.full((10,), -5), label_set=SCANNET20), "outside label set"),
    (dict(labels=torch.zeros(10, dtype=torch.int32), label_set=SCANNET20), "int64"),
    (dict(instances=torch.full((10,), -2)), ">= -1"),
    (dict(name=""), "name"),
])
def test_scene_rejects(kw, match):
    with pytest.raises(InputError, match=match):
        _scene(**kw)


def test_empty_scene_rejected():
    with pytest.raises(InputError, match="no points"):
        _scene(n=0)


def test_scene_is_frozen():
    s = _scene()
    with pytest.raises(AttributeError):
        s.name = "x"


K = np.array([[100.0, 0, 31.5], [0, 100.0, 23.5], [0, 0, 1]])


def test_frame_validation_and_depth_intrinsics():
    img = torch.zeros(48, 64, 3, dtype=torch.uint8)
    depth = torch.ones(24, 32)
    depth[0, 0] = float("nan")
    f = Frame("f", img, K, np.eye(4), depth)
    assert f.size == (64, 48)
    assert f.depth[0, 0] == 0  # non-finite depth becomes invalid (0)
    assert np.allclose(f.depth_intrinsics[0], [50.0, 0, 15.5])
    with pytest.raises(InputError, match="aspect"):
        Frame("f", img, K, np.eye(4), torch.ones(48, 48))
    with pytest.raises(InputError, match="orthonormal"):
        Frame("f", img, K, np.diag([2.0, 1, 1, 1]))
    with pytest.raises(InputError, match="NaN"):
        Frame("f", img, K, np.full((4, 4), np.inf))
    with pytest.raises(InputError, match="uint8"):
        Frame("f", img.float(), K, np.eye(4))


def test_frames_sequence_in_memory():
    img = torch.zeros(4, 4, 3, dtype=torch.uint8)
    T = np.eye(4)
    T[:3, 3] = [1, 2, 3]
    frames = Frames.from_frames([Frame(str(i), img, K, T) for i in range(5)])
    assert len(frames) == 5 and frames.names == ["0", "1", "2", "3", "4"]
    assert len(frames.subsample(2)) == 3 and not frames.has_depth
    assert frames.poses.shape == (5, 4, 4) and frames.poses[0, 0, 3] == 1
    assert [f.name for f in frames] == frames.names


def test_generated_room_is_a_valid_labelled_scene():
    room = make_room(seed=3)
    assert 40_000 < room.num_points < 120_000
    present = {SCANNET20.class_names[c] for c in torch.unique(room.labels).tolist()}
    assert {"wall", "floor", "door", "window", "table", "chair", "sofa", "bed", "cabinet", "bookshelf",
            "picture", "desk", "curtain"} <= present
    assert torch.equal(make_room(seed=3).coords, room.coords)
    assert not torch.equal(make_room(seed=4).coords[:100], room.coords[:100])
    floor = room.labels == SCANNET20.index("floor")
    assert torch.allclose(room.coords[floor, 2], torch.zeros(int(floor.sum())))
    assert (room.normals[floor, 2] == 1).all()
