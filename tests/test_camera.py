import numpy as np
import pytest
import torch

from geopurify.camera import (
    backproject_depth,
    camera_to_world,
    check_intrinsics,
    check_pose,
    project,
    scale_intrinsics,
    world_to_camera,
)
from geopurify.errors import InputError

K = np.array([[500.0, 0, 320.0], [0, 400.0, 240.0], [0, 0, 1]])


def rot_z(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def test_project_known_answer():
    pts = torch.tensor([[0.0, 0.0, 2.0], [1.0, 0.0, 2.0], [0.0, -0.5, 1.0], [0.0, 0.0, -1.0]], dtype=torch.float64)
    uv = project(pts, K)
    assert uv[0].tolist() == [320.0, 240.0]
    assert uv[1].tolist() == [320.0 + 250.0, 240.0]
    assert uv[2].tolist() == [320.0, 240.0 - 200.0]
    assert torch.isinf(uv[3]).all()


def test_pose_round_trip_and_convention():
    T = np.eye(4)
    T[:3, :3] = rot_z(0.3) @ np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0.0]])
    T[:3, 3] = [1.0, -2.0, 1.5]
    pts = torch.randn(100, 3, dtype=torch.float64)
    cam = world_to_camera(pts, torch.from_numpy(T))
    # x_w = R x_c + t
    assert torch.allclose(cam @ torch.from_numpy(T[:3, :3]).T + torch.from_numpy(T[:3, 3]), pts)
    assert torch.allclose(camera_to_world(cam, torch.from_numpy(T)), pts)
    # the camera centre maps to the origin
    assert torch.allclose(world_to_camera(torch.from_numpy(T[:3, 3][None]), torch.from_numpy(T)),
                          torch.zeros(1, 3, dtype=torch.float64))


def test_backproject_then_project_returns_pixels():
    depth = torch.rand(48, 64) * 3 + 0.5
    depth[5, 7] = 0
    pts, pix = backproject_depth(depth, K)
    assert pts.shape[0] == 48 * 64 - 1
    uv = project(pts.to(torch.float64), K)
    assert torch.allclose(uv[:, 1], pix[:, 0].to(torch.float64), atol=1e-4)
    assert torch.allclose(uv[:, 0], pix[:, 1].to(torch.float64), atol=1e-4)
    assert torch.allclose(pts[:, 2], depth[pix[:, 0], pix[:, 1]])


def test_scale_intrinsics_follows_pixel_centres():
    pts = torch.tensor([[0.3, -0.2, 2.0], [-1.0, 0.4, 3.0]], dtype=torch.float64)
    uv_full = project(pts, K)
    K_half = scale_intrinsics(K, (640, 480), (320, 240))
    uv_half = project(pts, K_half)
    assert torch.allclose(uv_half, (uv_full + 0.5) * 0.5 - 0.5)
    # image corners map to image corners
    assert np.isclose(scale_intrinsics(K, (640, 480), (1280, 960))[0, 2], (320 + 0.5) * 2 - 0.5)


@pytest.mark.parametrize("bad,match", [
    (np.diag([1.0, 1.0, 2.0, 1.0]), "orthonormal"),
    (np.diag([1.0, 1.0, -1.0, 1.0]), "det"),
    (np.full((4, 4), np.nan), "NaN"),
    (np.eye(3), "4x4"),
    (np.vstack([np.eye(4)[:3], [0, 0, 1, 1]]), "last row"),
])
def test_check_pose_rejects(bad, match):
    with pytest.raises(InputError, match=match):
        check_pose(bad)


def test_check_intrinsics():
    assert check_intrinsics(np.eye(4)).shape == (3, 3)
    with pytest.raises(InputError, match="positive"):
        check_intrinsics(np.diag([-1.0, 1.0, 1.0]))
    with pytest.raises(InputError, match="non-finite"):
        check_intrinsics(np.full((3, 3), np.inf))
    with pytest.raises(InputError, match="pinhole"):
        check_intrinsics(np.array([[1.0, 0, 0], [0, 1, 0], [1, 0, 1]]))


def test_look_at_points_the_optical_axis_at_the_target():
    from geopurify.camera import look_at

    T = look_at(np.array([1.0, 2.0, 1.5]), np.array([4.0, 2.0, 0.5]))
    check_pose(T)
    uv = project(world_to_camera(torch.tensor([[4.0, 2.0, 0.5]], dtype=torch.float64), torch.from_numpy(T)), K)
    assert torch.allclose(uv, torch.tensor([[320.0, 240.0]], dtype=torch.float64))
    # world up appears towards the top of the image (smaller v)
    up = project(world_to_camera(torch.tensor([[4.0, 2.0, 0.6]], dtype=torch.float64), torch.from_numpy(T)), K)
    assert up[0, 1] < 240
    with pytest.raises(ValueError):
        look_at(np.zeros(3), np.array([0.0, 0, 1]))
