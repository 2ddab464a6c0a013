"""Writers of phone / RGB-D capture formats from in-memory frames, each following the format's own
documentation (cited per writer), for round-trip tests of the capture readers.

Every writer takes frames in this package's convention (OpenCV camera, ``cam_to_world``, depth in metres)
and converts them with its own small formula, written independently of the readers' helpers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from geopurify.camera import scale_intrinsics

FLIP_YZ = np.diag([1.0, -1.0, -1.0, 1.0])


def matrix_to_quaternion_xyzw(R: np.ndarray) -> np.ndarray:
    """Rotation matrix -> unit quaternion (qx, qy, qz, qw), Shepperd's method."""
    tr = np.trace(R)
    if tr > 0:
        s = 2 * np.sqrt(tr + 1)
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, s / 4]
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2 * np.sqrt(1 + R[i, i] - R[j, j] - R[k, k])
        q = [0.0, 0.0, 0.0, (R[k, j] - R[j, k]) / s]
        q[i], q[j], q[k] = s / 4, (R[j, i] + R[i, j]) / s, (R[k, i] + R[i, k]) / s
    return np.array(q)


def matrix_to_axis_angle(R: np.ndarray) -> np.ndarray:
    """Rotation matrix -> axis-angle vector (radians), for rotations below 180 degrees."""
    theta = np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))
    if theta < 1e-12:
        return np.zeros(3)
    w = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / (2 * np.sin(theta))
    return w * theta


def depth_u16(depth_m: np.ndarray, per_metre: float) -> np.ndarray:
    return np.clip(np.round(depth_m * per_metre), 0, 65535).astype(np.uint16)


def write_nerfstudio(root: Path, frames, *, depth: bool = True, extra: dict | None = None) -> dict:
    """docs.nerf.studio ``quickstart/data_conventions.html``: ``transform_matrix`` is camera-to-world with
    the OpenGL camera (+x right, +y up, looks down -z); intrinsics ``fl_x fl_y cx cy w h``; depth PNG in
    millimetres (``depth_unit_scale_factor`` 1e-3)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "depth").mkdir(exist_ok=True)
    K = frames[0].intrinsics
    W, H = frames[0].size
    meta = {"camera_model": "OPENCV", "fl_x": K[0, 0], "fl_y": K[1, 1], "cx": K[0, 2], "cy": K[1, 2], "w": W, "h": H,
            "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0, "depth_unit_scale_factor": 1e-3, "frames": []}
    for i, f in enumerate(frames):
        Image.fromarray(f.image.numpy()).save(root / "images" / f"frame_{i:05d}.png")
        entry = {"file_path": f"images/frame_{i:05d}.png", "transform_matrix": (f.cam_to_world @ FLIP_YZ).tolist()}
        if depth:
            Image.fromarray(depth_u16(f.depth.numpy(), 1000)).save(root / "depth" / f"frame_{i:05d}.png")
            entry["depth_file_path"] = f"depth/frame_{i:05d}.png"
        meta["frames"].append(entry)
    meta.update(extra or {})
    (root / "transforms.json").write_text(json.dumps(meta, indent=1))
    return meta


def write_strayscanner(root: Path, frames) -> None:
    """Stray Scanner data format (docs.strayrobots.io, ``StrayVisualizer/stray_visualize.py``):
    ``camera_matrix.csv`` = 3x3 K of the 1920x1440 video; ``odometry.csv`` = ``timestamp, frame, x, y, z,
    qx, qy, qz, qw``, camera-to-world, camera axes OpenCV (the app writes ``q_WA * q_AC``, ``q_AC`` a half
    turn about x); ``depth/NNNNNN.npy`` uint16 millimetres; colour frames extracted from ``rgb.mp4``."""
    for sub in ("rgb", "depth", "confidence"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    K = scale_intrinsics(frames[0].intrinsics, frames[0].size, (1920, 1440))
    (root / "camera_matrix.csv").write_text("\n".join(",".join(f"{v:.10g}" for v in row) for row in K) + "\n")
    lines = ["timestamp, frame, x, y, z, qx, qy, qz, qw"]
    for i, f in enumerate(frames):
        Image.fromarray(f.image.numpy()).save(root / "rgb" / f"{i:06d}.png")
        np.save(root / "depth" / f"{i:06d}.npy", depth_u16(f.depth.numpy(), 1000))
        q = matrix_to_quaternion_xyzw(f.cam_to_world[:3, :3])
        lines.append(", ".join(f"{v:.10g}" for v in [0.1 * i, i, *f.cam_to_world[:3, 3], *q]))
    (root / "odometry.csv").write_text("\n".join(lines) + "\n")


def write_arkitscenes(root: Path, frames, video: str = "41069025", t0: float = 1234.5, traj_offset: float = 0.0004) -> None:
    """apple/ARKitScenes ``DATA.md`` and ``tenFpsDataLoader.py``: ``lowres_wide/<video>_<t>.png``,
    ``lowres_depth`` uint16 mm, ``.pincam`` = ``w h fx fy cx cy``, ``lowres_wide.traj`` line = timestamp,
    axis-angle (3, radians), translation (3, metres) of the world-to-camera transform."""
    for sub in ("lowres_wide", "lowres_depth", "lowres_wide_intrinsics"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    traj = []
    for i, f in enumerate(frames):
        t = t0 + 0.1 * i
        name = f"{video}_{t:.3f}"
        Image.fromarray(f.image.numpy()).save(root / "lowres_wide" / f"{name}.png")
        Image.fromarray(depth_u16(f.depth.numpy(), 1000)).save(root / "lowres_depth" / f"{name}.png")
        K, (W, H) = f.intrinsics, f.size
        (root / "lowres_wide_intrinsics" / f"{name}.pincam").write_text(
            f"{W} {H} {K[0, 0]} {K[1, 1]} {K[0, 2]} {K[1, 2]}\n")
        w2c = np.linalg.inv(f.cam_to_world)
        traj.append(" ".join(f"{v:.9f}" for v in [t + traj_offset, *matrix_to_axis_angle(w2c[:3, :3]), *w2c[:3, 3]]))
    (root / "lowres_wide.traj").write_text("\n".join(traj) + "\n")


REPLICA_K = np.array([[600.0, 0, 599.5], [0, 600.0, 339.5], [0, 0, 1]])
REPLICA_SIZE = (1200, 680)


def replica_pixels(K_src: np.ndarray, src_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each Replica pixel, the source pixel (row, col) seen along the same ray, and whether it exists."""
    W, H = REPLICA_SIZE
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    su = np.round((u - REPLICA_K[0, 2]) / REPLICA_K[0, 0] * K_src[0, 0] + K_src[0, 2]).astype(np.int64)
    sv = np.round((v - REPLICA_K[1, 2]) / REPLICA_K[1, 1] * K_src[1, 1] + K_src[1, 2]).astype(np.int64)
    inside = (su >= 0) & (su < src_size[0]) & (sv >= 0) & (sv < src_size[1])
    return sv.clip(0, src_size[1] - 1), su.clip(0, src_size[0] - 1), inside


def write_replica(root: Path, frames) -> None:
    """NICE-SLAM's Replica renders (``configs/Replica/replica.yaml``; ConceptGraphs ``replica.yaml``):
    1200x680, fx = fy = 600, cx 599.5, cy 339.5; ``results/frameNNNNNN.jpg``, ``results/depthNNNNNN.png``
    (metres x 6553.5); ``traj.txt`` one row-major 4x4 camera-to-world (OpenCV camera) per line. The source
    frames are re-rendered into that camera (same centre and rotation, nearest source pixel along each ray:
    z is unchanged)."""
    (root / "results").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, f in enumerate(frames):
        rows, cols, inside = replica_pixels(f.intrinsics, f.size)
        img = np.where(inside[..., None], f.image.numpy()[rows, cols], 0).astype(np.uint8)
        Image.fromarray(img).save(root / "results" / f"frame{i:06d}.jpg", quality=95)
        d = f.depth.numpy()
        dr, dc, dinside = replica_pixels(f.depth_intrinsics, (d.shape[1], d.shape[0]))
        Image.fromarray(depth_u16(np.where(dinside, d[dr, dc], 0), 6553.5)).save(root / "results" / f"depth{i:06d}.png")
        lines.append(" ".join(f"{v:.12g}" for v in f.cam_to_world.ravel()))
    (root / "traj.txt").write_text("\n".join(lines) + "\n")


def write_record3d(path: Path, frames, *, meta_extra: dict | None = None) -> None:
    """Record3D ``.r3d`` (ConceptGraphs ``preprocess_r3d_file.py``, Record3D issue #80): a zip of ``metadata``
    JSON (``w h dw dh``, ``K`` column-major, ``poses`` = ``qx qy qz qw tx ty tz`` camera-to-world, ARKit /
    OpenGL camera), ``rgbd/<i>.jpg`` and ``rgbd/<i>.depth`` (LZFSE float32 metres)."""
    import io
    import zipfile

    import lzfse

    K = frames[0].intrinsics
    (W, H), (h, w) = frames[0].size, frames[0].depth.shape
    poses = []
    with zipfile.ZipFile(path, "w") as z:
        for i, f in enumerate(frames):
            buf = io.BytesIO()
            Image.fromarray(f.image.numpy()).save(buf, format="JPEG", quality=95)
            z.writestr(f"rgbd/{i}.jpg", buf.getvalue())
            z.writestr(f"rgbd/{i}.depth", lzfse.compress(f.depth.numpy().astype(np.float32).tobytes()))
            T = f.cam_to_world @ FLIP_YZ
            poses.append([*matrix_to_quaternion_xyzw(T[:3, :3]), *T[:3, 3]])
        meta = {"w": W, "h": H, "dw": w, "dh": h, "fps": 60, "cameraType": 1, "K": K.T.ravel().tolist(),
                "poses": poses, **(meta_extra or {})}
        z.writestr("metadata", json.dumps(meta))


def write_record3d_export(root: Path, frames, *, meta_extra: dict | None = None) -> None:
    """Record3D "EXR + JPG" export as nerfstudio reads it (``scripts/process_data.py`` ``ProcessRecord3D``,
    ``process_data/record3d_utils.py``): ``metadata.json`` (``w h``, ``K`` column-major, ``poses`` =
    ``qx qy qz qw tx ty tz`` camera-to-world, ARKit / OpenGL camera), ``rgb/<i>.jpg``, ``depth/<i>.exr``
    (one float32 channel, metres)."""
    import OpenEXR

    (root / "rgb").mkdir(parents=True, exist_ok=True)
    (root / "depth").mkdir(exist_ok=True)
    K = frames[0].intrinsics
    (W, H), (h, w) = frames[0].size, frames[0].depth.shape
    poses = []
    for i, f in enumerate(frames):
        Image.fromarray(f.image.numpy()).save(root / "rgb" / f"{i}.jpg", quality=95)
        header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
        OpenEXR.File(header, {"R": f.depth.numpy().astype(np.float32)}).write(str(root / "depth" / f"{i}.exr"))
        T = f.cam_to_world @ FLIP_YZ
        poses.append([*matrix_to_quaternion_xyzw(T[:3, :3]), *T[:3, 3]])
    meta = {"w": W, "h": H, "dw": w, "dh": h, "fps": 60, "K": K.T.ravel().tolist(), "poses": poses,
            **(meta_extra or {})}
    (root / "metadata.json").write_text(json.dumps(meta))


def write_splat(path: Path, xyz: np.ndarray, rgb01: np.ndarray, normals: np.ndarray, opacity_logit: np.ndarray) -> None:
    """A 3D Gaussian-splat PLY as graphdeco-inria/gaussian-splatting ``GaussianModel.save_ply`` writes it:
    float32 ``x y z nx ny nz f_dc_0..2 f_rest_0..44 opacity scale_0..2 rot_0..3`` (``rot`` = w x y z), with
    ``f_dc = (rgb - 0.5) / C0`` (``utils/sh_utils.py`` ``RGB2SH``), flat Gaussians whose shortest axis
    (``scale_2``, a log) is the normal."""
    from plyfile import PlyData, PlyElement

    n = len(xyz)
    names = (["x", "y", "z", "nx", "ny", "nz"] + [f"f_dc_{i}" for i in range(3)] + [f"f_rest_{i}" for i in range(45)]
             + ["opacity"] + [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)])
    data = np.zeros(n, dtype=[(k, "f4") for k in names])
    data["x"], data["y"], data["z"] = xyz.T
    f_dc = (rgb01 - 0.5) / 0.28209479177387814
    for i in range(3):
        data[f"f_dc_{i}"] = f_dc[:, i]
    data["opacity"] = opacity_logit
    data["scale_0"], data["scale_1"], data["scale_2"] = np.log(0.01), np.log(0.01), np.log(0.001)
    for j, nrm in enumerate(np.asarray(normals, np.float64)):            # rotation whose z column is the normal
        a = np.array([1.0, 0, 0]) if abs(nrm[0]) < 0.9 else np.array([0, 1.0, 0])
        x = np.cross(a, nrm)
        x /= np.linalg.norm(x)
        R = np.stack([x, np.cross(nrm, x), nrm], 1)
        qx, qy, qz, qw = matrix_to_quaternion_xyzw(R)
        data["rot_0"][j], data["rot_1"][j], data["rot_2"][j], data["rot_3"][j] = qw, qx, qy, qz
    PlyData([PlyElement.describe(data, "vertex")]).write(str(path))


def write_matterport_region(house: Path, xyz: np.ndarray, faces: np.ndarray, category_id: np.ndarray,
                            region: str = "region0", normals: np.ndarray | None = None) -> Path:
    """niessner/Matterport ``data_organization.md``: ``region_segmentations/region<N>.ply``, vertices
    ``x y z nx ny nz tx ty red green blue`` (float, uchar colours), faces ``vertex_indices material_id
    segment_id category_id`` (int; ``category_id`` -1 = none, else a ``category_mapping.tsv`` index)."""
    from plyfile import PlyData, PlyElement

    (house / "region_segmentations").mkdir(parents=True, exist_ok=True)
    vert = np.zeros(len(xyz), dtype=[(k, "f4") for k in ("x", "y", "z", "nx", "ny", "nz", "tx", "ty")]
                    + [(k, "u1") for k in ("red", "green", "blue")])
    vert["x"], vert["y"], vert["z"] = np.asarray(xyz, np.float64).T
    vert["nz"], vert["red"], vert["green"], vert["blue"] = 1.0, 200, 100, 50
    if normals is not None:
        vert["nx"], vert["ny"], vert["nz"] = np.asarray(normals, np.float64).T
    face = np.empty(len(faces), dtype=[("vertex_indices", "i4", (3,)), ("material_id", "i4"),
                                       ("segment_id", "i4"), ("category_id", "i4")])
    face["vertex_indices"], face["material_id"], face["segment_id"] = faces, 0, 0
    face["category_id"] = category_id
    path = house / "region_segmentations" / f"{region}.ply"
    PlyData([PlyElement.describe(vert, "vertex"), PlyElement.describe(face, "face")]).write(str(path))
    return path


def write_matterport_frames(house: Path, frames, pano: str = "0f4e3b2a") -> None:
    """``data_organization.md``: ``undistorted_color_images/<pano>_i<c>_<y>.jpg``,
    ``undistorted_depth_images/<pano>_d<c>_<y>.png`` (uint16, 0.25 mm units: metres x 4000), and
    ``undistorted_camera_parameters/<house>.conf``: ``intrinsics_matrix fx 0 cx 0 fy cy 0 0 1`` for the next
    six ``scan <depth> <color> <camera-to-world, row-major>`` lines, the camera looking down -z with +y up
    (OpenScene's ``preprocess_2d_matterport.py`` negates columns 1 and 2 to reach an OpenCV camera)."""
    for sub in ("undistorted_color_images", "undistorted_depth_images", "undistorted_camera_parameters"):
        (house / sub).mkdir(parents=True, exist_ok=True)
    lines = ["dataset matterport", f"n_images {len(frames)}", "depth_directory undistorted_depth_images",
             "color_directory undistorted_color_images"]
    for i, f in enumerate(frames):
        cam, yaw = divmod(i, 6)
        color, depth = f"{pano}_i{cam}_{yaw}.jpg", f"{pano}_d{cam}_{yaw}.png"
        Image.fromarray(f.image.numpy()).save(house / "undistorted_color_images" / color, quality=95)
        Image.fromarray(depth_u16(f.depth.numpy(), 4000)).save(house / "undistorted_depth_images" / depth)
        if yaw == 0:
            lines.append("intrinsics_matrix " + " ".join(f"{v:.10g}" for v in f.intrinsics.ravel()))
        lines.append(f"scan {depth} {color} " + " ".join(f"{v:.12g}" for v in (f.cam_to_world @ FLIP_YZ).ravel()))
    (house / "undistorted_camera_parameters" / f"{house.name}.conf").write_text("\n".join(lines) + "\n")
