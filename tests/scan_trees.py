"""Writers of small on-disk scan layouts for reader tests (ScanNet release/export, 7-Scenes, ...)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from geopurify.io.ply import write_ply

REPO_README = Path(__file__).resolve().parents[1] / "README.md"
K_COLOR = np.array([[120.0, 0, 64.5], [0, 120.0, 48.5], [0, 0, 1]])  # for 130x98 colour images
COLOR_SIZE = (130, 98)
DEPTH_SIZE = (64, 48)


def plane_mesh(n: int = 10, size: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """A flat square grid mesh on z = 0 with counter-clockwise (upward-facing) triangles."""
    g = np.linspace(0, size, n)
    xx, yy = np.meshgrid(g, g, indexing="xy")
    xyz = np.c_[xx.ravel(), yy.ravel(), np.zeros(n * n)]
    faces = []
    for r in range(n - 1):
        for c in range(n - 1):
            a, b, d = r * n + c, r * n + c + 1, (r + 1) * n + c
            e = d + 1
            faces += [(a, b, e), (a, e, d)]
    return xyz, np.array(faces)


def look_down_pose(x: float, y: float, height: float) -> np.ndarray:
    """A camera above (x, y) looking straight down (-z), image rows along -y."""
    T = np.eye(4)
    T[:3, :3] = np.array([[1.0, 0, 0], [0, -1, 0], [0, 0, -1]])
    T[:3, 3] = [x, y, height]
    return T


def write_frame_images(color_path: Path, depth_path: Path | None, depth_m: float,
                       depth_size: tuple[int, int] = DEPTH_SIZE, rng: np.random.Generator | None = None) -> None:
    rng = rng or np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (COLOR_SIZE[1], COLOR_SIZE[0], 3), dtype=np.uint8)).save(color_path)
    if depth_path is not None:
        Image.fromarray(np.full((depth_size[1], depth_size[0]), int(depth_m * 1000), dtype=np.uint16)).save(depth_path)


def write_matrix(path: Path, m: np.ndarray) -> None:
    path.write_text("\n".join(" ".join(f"{v:.9g}" for v in row) for row in np.atleast_2d(m)) + "\n")


def write_scannet_release(root: Path, name: str = "scene0999_00", n_frames: int = 60,
                          inf_pose_frames: tuple[int, ...] = (20,), align: np.ndarray | None = None) -> dict:
    """A ScanNet v2 scene folder with mesh, labels, axis alignment and a SensReader export."""
    root.mkdir(parents=True, exist_ok=True)
    xyz, faces = plane_mesh()
    rgb = np.tile(np.array([[200, 100, 50]], np.uint8), (len(xyz), 1))
    write_ply(root / f"{name}_vh_clean_2.ply", xyz, rgb=rgb, faces=faces)
    nyu = np.where(np.arange(len(xyz)) % 2 == 0, 2, 13)  # floor, blinds (not a ScanNet20 class)
    write_ply(root / f"{name}_vh_clean_2.labels.ply", xyz, scalars={"label": nyu.astype(np.uint16)})
    if align is None:
        align = np.eye(4)
        c, s = np.cos(0.5), np.sin(0.5)
        align[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
        align[:3, 3] = [-1.0, 0.5, 0.1]
    (root / f"{name}.txt").write_text("colorHeight = 968\naxisAlignment = " + " ".join(f"{v:.9g}" for v in align.ravel())
                                      + "\nnumDepthFrames = 60\n")
    for sub in ("color", "depth", "pose", "intrinsic"):
        (root / sub).mkdir(exist_ok=True)
    K4 = np.eye(4)
    K4[:3, :3] = K_COLOR
    write_matrix(root / "intrinsic" / "intrinsic_color.txt", K4)
    Kd = np.eye(4)
    Kd[:3, :3] = [[59.0, 0, 31.5], [0, 59.0, 23.5], [0, 0, 1]]
    write_matrix(root / "intrinsic" / "intrinsic_depth.txt", Kd)
    poses = {}
    for i in range(n_frames):
        write_frame_images(root / "color" / f"{i}.jpg", root / "depth" / f"{i}.png", 1.5)
        pose = look_down_pose(1.0, 1.0, 1.5)
        if i in inf_pose_frames:
            pose = np.full((4, 4), -np.inf)
        write_matrix(root / "pose" / f"{i}.txt", pose)
        poses[i] = pose
    return {"xyz": xyz, "faces": faces, "nyu": nyu, "align": align, "poses": poses, "name": name}


def write_sevenscenes(root: Path, n: int = 3, depth_size: tuple[int, int] = DEPTH_SIZE,
                      intrinsics: np.ndarray | None = None) -> None:
    """A 7-Scenes-style folder: frame-NNNNNN.color.png/.depth.png/.pose.txt and camera-intrinsics.txt."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        stem = f"frame-{i:06d}"
        write_frame_images(root / f"{stem}.color.png", root / f"{stem}.depth.png", 1.0 + 0.1 * i, depth_size)
        write_matrix(root / f"{stem}.pose.txt", look_down_pose(0.1 * i, 0.0, 1.5))
    write_matrix(root / "camera-intrinsics.txt", K_COLOR if intrinsics is None else intrinsics)


def write_room_scan(root: Path, masks: Path, views: int = 12, density: float = 120.0, seed: int = 0) -> dict:
    """The generated room as a ``scannet-frames-json`` scan (points, labels, rendered colour frames, no
    depth) plus error-free per-frame class masks (``masks`` encoder layout) from the simulator."""
    import json

    from geopurify.labels import SCANNET20
    from geopurify.sim import MaskModelNoise, SimulatedMaskModel, make_room, render_views, room_cameras

    room = make_room(seed=seed, density=density)
    (root / "frames").mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    rgb = np.round(room.colors.numpy() * 255)
    np.save(root / "vert.npy", np.c_[room.coords.numpy(), rgb].astype(np.float32))
    nyu = np.where(room.labels.numpy() >= 0, np.array(SCANNET20.source_ids)[room.labels.numpy().clip(0)], 0)
    np.save(root / "sem_label.npy", nyu.astype(np.uint32))
    np.save(root / "ins_label.npy", (room.instances.numpy() + 1).astype(np.uint32))
    rendered = render_views(room, room_cameras(room, views, seed=seed), name="view")
    clean = MaskModelNoise(consistent_confusion=0, view_confusion=0, mask_stride=1, boundary_px=0,
                           blobs_per_view=0, uncovered=0)
    model = SimulatedMaskModel(SCANNET20, clean, seed=seed)
    frames = []
    for v in rendered:
        Image.fromarray(v.frame.image.numpy()).save(root / "frames" / f"{v.frame.name}.png")
        owner, names = model.segment(v)
        m = np.stack([(owner == k).numpy() for k in range(len(names))]) if names else np.zeros((0, *owner.shape), bool)
        np.savez(masks / f"{v.frame.name}.npz", masks=m, classes=np.array(names))
        frames.append({"image": f"{v.frame.name}.png", "camera_to_world_unaligned_4x4": v.frame.cam_to_world.tolist()})
    K4 = np.eye(4)
    K4[:3, :3] = rendered[0].frame.intrinsics
    (root / "frames.json").write_text(json.dumps({"scene": root.name, "intrinsic_color_4x4": K4.tolist(),
                                                  "axis_align_matrix_4x4": np.eye(4).tolist(), "frames": frames}))
    return {"room": room}


def write_batch_scans(root: Path, n: int = 4, views: int = 4, density: float = 50.0) -> list[Path]:
    """``n`` small generated rooms ``root/scans/scene000K_00`` with their masks in ``root/masks/<name>``
    (a batch run's ``--source root/masks/{name}``)."""
    out = []
    for k in range(n):
        name = f"scene{k:04d}_00"
        write_room_scan(root / "scans" / name, root / "masks" / name, views=views, density=density, seed=k)
        out.append(root / "scans" / name)
    return out
