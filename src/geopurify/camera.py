r"""Camera conventions: the one place that defines them.

Coordinates are metres. Cameras follow the OpenCV pinhole model: camera axes x right, y down,
z forward (viewing direction). A pose is ``cam_to_world`` :math:`T_{wc} = [R\,|\,t]` (4x4), mapping
camera coordinates to world coordinates, :math:`x_w = R x_c + t`. A world point projects to pixel
(u, v) by

.. math::

    z \begin{bmatrix} u \\ v \\ 1 \end{bmatrix} = K \, R^\top (x_w - t),
    \qquad K = \begin{bmatrix} f_x & 0 & c_x \\ 0 & f_y & c_y \\ 0 & 0 & 1 \end{bmatrix},

with ``u`` the column and ``v`` the row. Pixel centres lie at integer (u, v): pixel ``[row, col]``
covers ``[col - 0.5, col + 0.5) x [row - 0.5, row + 0.5)``, so a projected point falls in pixel
``(round(v), round(u))``. Depth images store ``z`` (not the ray length) in metres, 0 = invalid.
Intrinsics always refer to the image they come with; :func:`scale_intrinsics` moves them to another
resolution of the same field of view.
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import InputError

ORTHONORMAL_ATOL = 1e-3


def check_intrinsics(K: np.ndarray | torch.Tensor, what: str = "intrinsics") -> np.ndarray:
    """Validate a 3x3 pinhole matrix; returns it as ``(3, 3) float64`` numpy.

    Raises:
        InputError: wrong shape, non-finite values, non-positive focal lengths, or skew/last row
            not of the pinhole form.
    """
    K = np.asarray(K, dtype=np.float64)
    if K.shape == (4, 4):  # ScanNet stores 4x4 intrinsics
        K = K[:3, :3]
    if K.shape != (3, 3):
        raise InputError(f"{what} must be 3x3, got shape {K.shape}")
    if not np.isfinite(K).all():
        raise InputError(f"{what} contain non-finite values")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(f"{what} need positive focal lengths, got fx={K[0, 0]}, fy={K[1, 1]}")
    if not np.allclose(K[2], [0, 0, 1]) or abs(K[1, 0]) > 1e-9 or abs(K[0, 1]) > 1e-6 * K[0, 0]:
        raise InputError(f"{what} are not a pinhole matrix [[fx,0,cx],[0,fy,cy],[0,0,1]]: {K.tolist()}")
    return K


def check_pose(T: np.ndarray | torch.Tensor, what: str = "pose") -> np.ndarray:
    """Validate a 4x4 rigid ``cam_to_world`` transform; returns ``(4, 4) float64`` numpy.

    Raises:
        InputError: wrong shape, NaN/inf, last row not ``[0, 0, 0, 1]``, or a rotation block that
            is not orthonormal with determinant +1 (tolerance ``ORTHONORMAL_ATOL``).
    """
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise InputError(f"{what} must be 4x4, got shape {T.shape}")
    if not np.isfinite(T).all():
        raise InputError(f"{what} contains NaN or inf")
    if not np.allclose(T[3], [0, 0, 0, 1], atol=1e-6):
        raise InputError(f"{what} last row must be [0, 0, 0, 1], got {T[3].tolist()}")
    R = T[:3, :3]
    err = np.abs(R.T @ R - np.eye(3)).max()
    if err > ORTHONORMAL_ATOL or np.linalg.det(R) < 0:
        raise InputError(f"{what} rotation is not orthonormal with det +1 (|R^T R - I| = {err:.2e}, "
                         f"det = {np.linalg.det(R):.3f})")
    return T


def scale_intrinsics(K: np.ndarray | torch.Tensor, from_size: tuple[int, int],
                     to_size: tuple[int, int]) -> np.ndarray:
    """Intrinsics of the same camera resampled from ``from_size`` to ``to_size`` (both ``(W, H)``).

    With pixel centres at integers, a resize by ``s`` maps ``u -> (u + 0.5) s - 0.5``, so
    ``fx' = s_x fx`` and ``cx' = s_x (cx + 0.5) - 0.5`` (likewise for y).
    """
    K = np.array(K, dtype=np.float64)[:3, :3]
    sx, sy = to_size[0] / from_size[0], to_size[1] / from_size[1]
    out = K.copy()
    out[0, 0], out[0, 2] = K[0, 0] * sx, (K[0, 2] + 0.5) * sx - 0.5
    out[1, 1], out[1, 2] = K[1, 1] * sy, (K[1, 2] + 0.5) * sy - 0.5
    return out


def world_to_camera(points: torch.Tensor, cam_to_world: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Transform world points into the camera frame.

    Args:
        points: ``(N, 3)`` float tensor, world coordinates in metres.
        cam_to_world: ``(4, 4)`` rigid transform (see module docstring).
    Returns:
        ``(N, 3)`` camera coordinates :math:`R^\\top (x_w - t)` in the dtype of ``points``: float32 points
        in one fused float32 product ``R^T x_w - R^T t`` (errors about 1e-6 m; the result is a view of a
        ``(3, N)`` buffer, so that each coordinate is contiguous), others in float64.
    """
    T = torch.as_tensor(cam_to_world, dtype=torch.float64, device=points.device)
    R, t = T[:3, :3], T[:3, 3]
    if points.dtype == torch.float32:
        return torch.addmm((-(t @ R)).to(torch.float32)[:, None], R.T.to(torch.float32), points.T).T
    return ((points.to(torch.float64) - t) @ R).to(points.dtype)


def camera_to_world(points_cam: torch.Tensor, cam_to_world: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`world_to_camera`: ``(N, 3)`` camera points to world points."""
    T = torch.as_tensor(cam_to_world, dtype=torch.float64, device=points_cam.device)
    return (points_cam.to(torch.float64) @ T[:3, :3].T + T[:3, 3]).to(points_cam.dtype)


def project(points_cam: torch.Tensor, K: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Pinhole projection of camera-frame points: ``u = fx x / z + cx``, ``v = fy y / z + cy``.

    Args:
        points_cam: ``(N, 3)`` camera coordinates (z forward, metres).
        K: ``(3, 3)`` intrinsics.
    Returns:
        ``(N, 2)`` float pixel coordinates ``(u, v)`` = (column, row) in the dtype of ``points_cam`` (a
        view of a ``(2, N)`` buffer). Points with ``z <= 0`` get ``inf``; callers decide visibility.
    """
    K = torch.as_tensor(np.asarray(K)[:3, :3] if not isinstance(K, torch.Tensor) else K[:3, :3],
                        dtype=points_cam.dtype, device=points_cam.device)
    x, y, z = points_cam.unbind(1)
    uv = torch.empty(2, len(z), dtype=points_cam.dtype, device=points_cam.device)
    torch.mul(K[0, 0], x, out=uv[0]).div_(z).add_(K[0, 2])
    torch.mul(K[1, 1], y, out=uv[1]).div_(z).add_(K[1, 2])
    return uv.masked_fill_(~(z > 0), float("inf")).T


def backproject_depth(depth: torch.Tensor, K: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Lift every valid depth pixel to a camera-frame point.

    Args:
        depth: ``(H, W)`` float depth in metres (z), 0 or non-finite = invalid.
        K: ``(3, 3)`` intrinsics of this depth image.
    Returns:
        points_cam: ``(M, 3)`` camera coordinates of the valid pixels, row-major order.
        pixels: ``(M, 2)`` LongTensor of their ``(row, col)``.
    """
    K = np.asarray(K, dtype=np.float64)[:3, :3]
    H, W = depth.shape
    rows, cols = torch.nonzero(torch.isfinite(depth) & (depth > 0), as_tuple=True)
    z = depth[rows, cols].to(torch.float64)
    x = (cols.to(torch.float64) - K[0, 2]) / K[0, 0] * z
    y = (rows.to(torch.float64) - K[1, 2]) / K[1, 1] * z
    return torch.stack([x, y, z], 1).to(depth.dtype), torch.stack([rows, cols], 1)


def look_at(eye: np.ndarray, target: np.ndarray, up: tuple[float, float, float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """``cam_to_world`` of a camera at ``eye`` looking at ``target`` with image rows pointing down
    (``up`` is world up; it must not be parallel to the viewing direction). Returns ``(4, 4) float64``."""
    eye, target = np.asarray(eye, dtype=np.float64), np.asarray(target, dtype=np.float64)
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: the viewing direction is parallel to 'up'")
    x /= np.linalg.norm(x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, np.cross(z, x), z], 1)
    T[:3, 3] = eye
    return T


# --- pose conventions of capture formats, converted once at the reader --------------------------

#: ``cam_to_world @ OPENGL_TO_OPENCV`` turns an OpenGL/ARKit camera (x right, y up, looks down -z) into
#: this package's OpenCV camera (x right, y down, z forward): the camera's y and z axes flip sign.
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


def quaternion_to_matrix(q_xyzw: np.ndarray) -> np.ndarray:
    """``(..., 4)`` quaternions ``(qx, qy, qz, qw)`` (Hamilton, normalised here) -> ``(..., 3, 3)`` rotations."""
    q = np.asarray(q_xyzw, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def axis_angle_to_matrix(rvec: np.ndarray) -> np.ndarray:
    """``(..., 3)`` axis-angle vectors (radians, Rodrigues) -> ``(..., 3, 3)`` rotations."""
    r = np.asarray(rvec, dtype=np.float64)
    theta = np.linalg.norm(r, axis=-1, keepdims=True)
    axis = r / np.where(theta > 1e-12, theta, 1.0)
    x, y, z = np.moveaxis(axis, -1, 0)
    zero = np.zeros_like(x)
    k = np.stack([np.stack([zero, -z, y], -1), np.stack([z, zero, -x], -1), np.stack([-y, x, zero], -1)], -2)
    s, c = np.sin(theta)[..., None], np.cos(theta)[..., None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


def pose_matrix(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``(..., 4, 4)`` transforms from ``(..., 3, 3)`` rotations and ``(..., 3)`` translations."""
    R, t = np.asarray(R, dtype=np.float64), np.asarray(t, dtype=np.float64)
    T = np.zeros(R.shape[:-2] + (4, 4))
    T[..., :3, :3], T[..., :3, 3], T[..., 3, 3] = R, t, 1.0
    return T
