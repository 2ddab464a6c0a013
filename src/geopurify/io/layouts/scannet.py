"""ScanNet readers.

Layouts:

* ``scannet50k``: ``<dir>/<scene>_vert.npy`` (x, y, z, r, g, b 0..255), ``_sem_label.npy`` (NYU40),
  ``_ins_label.npy`` (0 = none), axis-aligned points, no frames.
* ``scannet-frames-json``: ``vert.npy``, ``sem_label.npy``, ``ins_label.npy``, ``frames.json``
  (``intrinsic_color_4x4``, ``axis_align_matrix_4x4``, per-frame ``camera_to_world_unaligned_4x4``)
  and ``frames/*.jpg``; the points are axis-aligned, so poses are aligned by
  ``cam_to_world = axis_align @ camera_to_world_unaligned``.
* ``scannet`` (the v2 release): ``<scene>_vh_clean_2.ply`` mesh, ``<scene>_vh_clean_2.labels.ply``
  (NYU40 ``label``), ``<scene>.txt`` (``axisAlignment = ...``), and a SensReader export
  (``color/<i>.jpg``, ``depth/<i>.png`` mm, ``pose/<i>.txt``, ``intrinsic/intrinsic_color.txt``,
  ``intrinsic/intrinsic_depth.txt``), which may also sit beside any point cloud.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import torch

from ...camera import check_intrinsics, check_pose
from ...errors import InputError
from ...geometry import mesh_vertex_normals
from ...labels import LabelSet, get_label_set
from ..arrays import load_npy
from ..frames import Frames, FrameSpec
from ..ply import read_ply
from ..text import read_matrix
from ._common import Scan, build_scene, map_labels_at, numeric_stem

log = logging.getLogger("geopurify.io")

SCANNET_FRAME_STEP = 20  # upstream keeps every 20th frame


def _instances(raw: np.ndarray) -> np.ndarray:
    inst = raw.astype(np.int64)
    inst[inst == 0] = -1
    return inst


def scannet50k_paths(path: Path) -> tuple[Path, Path, Path] | None:
    """``(vert, sem, ins)`` for a ``scannet50k`` scene given as ``<dir>/<scene>`` or its ``_vert.npy``."""
    s = str(path)
    prefix = s[: -len("_vert.npy")] if s.endswith("_vert.npy") else s
    vert = Path(prefix + "_vert.npy")
    if not vert.is_file():
        return None
    return vert, Path(prefix + "_sem_label.npy"), Path(prefix + "_ins_label.npy")


def list_scannet50k(folder: Path) -> list[Path]:
    """Every scene prefix ``<folder>/<scene>`` of a ``scannet50k`` folder, sorted."""
    return sorted(Path(str(p)[: -len("_vert.npy")]) for p in Path(folder).glob("*_vert.npy"))


def _vert_labels(vert_path: Path, sem_path: Path, ins_path: Path, name: str, label_set: LabelSet,
                 frames: Frames | None, layout: str) -> Scan:
    vert = load_npy(vert_path)
    if vert.ndim != 2 or vert.shape[1] != 6:
        raise InputError(f"expected an (N, 6) array of x, y, z, r, g, b, got shape {vert.shape}", vert_path)
    n = len(vert)
    labels = instances = None
    if sem_path.is_file():
        sem = load_npy(sem_path)
        if sem.shape != (n,):
            raise InputError(f"has {sem.shape} labels for {n} points", sem_path)
        labels = map_labels_at(sem_path, sem, label_set)
    if ins_path.is_file():
        ins = load_npy(ins_path)
        if ins.shape != (n,):
            raise InputError(f"has {ins.shape} instance ids for {n} points", ins_path)
        if ins.dtype.kind not in "iu" or (ins < 0).any():
            raise InputError(f"instance ids must be non-negative integers (0 = none), got {ins.dtype}", ins_path)
        instances = _instances(ins)
    rgb = vert[:, 3:6].astype(np.float32)
    if rgb.min() < 0 or rgb.max() > 255:
        raise InputError("colours must lie in 0..255", vert_path)
    viewpoint = None if frames is None else frames.poses[:, :3, 3].to(torch.float32)
    scene, est = build_scene(vert_path, name, vert[:, :3], rgb / 255.0, None, labels, label_set, instances,
                             viewpoint=viewpoint)
    return Scan(scene, frames, layout, vert_path, normals_estimated=est)


def read_scannet50k(path: str | Path, *, label_set: str | LabelSet = "scannet20") -> Scan:
    """Read a ``scannet50k`` scene (``<dir>/<scene>`` or ``<dir>/<scene>_vert.npy``)."""
    paths = scannet50k_paths(Path(path))
    if paths is None:
        raise InputError("no <scene>_vert.npy found for this scannet50k scene", path)
    vert, sem, ins = paths
    name = vert.name[: -len("_vert.npy")]
    return _vert_labels(vert, sem, ins, name, get_label_set(label_set), None, "scannet50k")


def read_scannet_frames_json(path: str | Path, *, label_set: str | LabelSet = "scannet20",
                             frame_step: int = 1) -> Scan:
    """Read the ``scannet-frames-json`` layout (points + real colour frames, no depth)."""
    root = Path(path)
    meta_path = root / "frames.json"
    try:
        meta = json.loads(meta_path.read_text())
        K = check_intrinsics(np.array(meta["intrinsic_color_4x4"]), "intrinsic_color_4x4")
        align = np.array(meta["axis_align_matrix_4x4"], dtype=np.float64)
        check_pose(align, "axis_align_matrix_4x4")
        specs = []
        for i, fr in enumerate(meta["frames"]):
            if i % frame_step:
                continue
            img = root / "frames" / Path(fr["image"]).name
            if not img.is_file():
                raise InputError(f"frame image {img.name} listed in frames.json is missing from {root / 'frames'}")
            c2w = check_pose(align @ check_pose(np.array(fr["camera_to_world_unaligned_4x4"]),
                                                f"frame {img.name} pose"), f"frame {img.name} aligned pose")
            specs.append(FrameSpec(name=img.stem, color_path=img, intrinsics=K, cam_to_world=c2w))
    except FileNotFoundError:
        raise InputError("file not found", meta_path) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc})", meta_path) from None
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise exc.at(meta_path) from None
        raise InputError(f"missing or malformed field ({type(exc).__name__}: {exc})", meta_path) from None
    name = meta.get("scene", root.name)
    return _vert_labels(root / "vert.npy", root / "sem_label.npy", root / "ins_label.npy", name,
                        get_label_set(label_set), Frames.from_specs(specs), "scannet-frames-json")


def read_axis_alignment(path: Path) -> np.ndarray:
    """The ``axisAlignment = m00 m01 ... m33`` line of a ScanNet ``<scene>.txt`` (identity if absent)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read ({exc})", path) from None
    m = re.search(r"^\s*axisAlignment\s*=\s*(.+)$", text, flags=re.MULTILINE)
    if m is None:
        return np.eye(4)
    try:
        mat = np.array([float(v) for v in m.group(1).split()], dtype=np.float64)
    except ValueError:
        raise InputError("axisAlignment is not 16 numbers", path) from None
    if mat.size != 16:
        raise InputError(f"axisAlignment has {mat.size} numbers, expected 16", path)
    return check_pose_at(mat.reshape(4, 4), path, "axisAlignment")


def check_pose_at(T: np.ndarray, path: Path, what: str) -> np.ndarray:
    try:
        return check_pose(T, what)
    except InputError as exc:
        raise exc.at(path) from None


def read_scannet_export_frames(root: str | Path, *, frame_step: int = SCANNET_FRAME_STEP,
                               axis_align: np.ndarray | None = None,
                               image_size: tuple[int, int] | None = None) -> Frames:
    """Frames of a SensReader export folder (``color/ depth/ pose/ intrinsic/``).

    Keeps frames whose number is a multiple of ``frame_step`` (upstream: 20) and skips, with a
    warning, frames whose pose is not finite (ScanNet marks lost tracking with ``-inf``).

    Args:
        axis_align: optional 4x4 applied to every pose (``cam_to_world = axis_align @ pose``).
        image_size: optional ``(W, H)`` to resize colour images to on load.
    Raises:
        InputError: missing folders or intrinsics, a colour frame without its pose or depth, a
            malformed pose or intrinsics file.
    """
    root = Path(root)
    for sub in ("color", "pose", "intrinsic"):
        if not (root / sub).is_dir():
            raise InputError(f"not a ScanNet export folder: '{sub}/' is missing", root)
    K = _read_intrinsics(root / "intrinsic" / "intrinsic_color.txt")
    depth_dir = root / "depth"
    K_depth = _read_intrinsics(root / "intrinsic" / "intrinsic_depth.txt") \
        if (root / "intrinsic" / "intrinsic_depth.txt").is_file() else None
    colors = sorted((p for p in (root / "color").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")),
                    key=numeric_stem)
    if not colors:
        raise InputError("no colour images in color/", root)
    specs, skipped = [], 0
    for img in colors:
        num = numeric_stem(img)[0]
        if frame_step > 1 and num % frame_step:
            continue
        pose_path = root / "pose" / f"{img.stem}.txt"
        if not pose_path.is_file():
            raise InputError(f"colour frame {img.name} has no pose file", pose_path)
        pose = read_matrix(pose_path, (4, 4))
        if not np.isfinite(pose).all():
            skipped += 1
            continue
        pose = check_pose_at(pose, pose_path, "pose")
        if axis_align is not None:
            pose = axis_align @ pose
        depth_path = None
        if depth_dir.is_dir():
            depth_path = depth_dir / f"{img.stem}.png"
            if not depth_path.is_file():
                raise InputError(f"colour frame {img.name} has no depth image", depth_path)
        specs.append(FrameSpec(name=img.stem, color_path=img, intrinsics=K, cam_to_world=pose,
                               depth_path=depth_path, depth_scale=1000.0, depth_invalid=(0,),
                               depth_intrinsics=K_depth if depth_path is not None else None,
                               image_size=image_size))
    if skipped:
        log.warning("%s: skipped %d frames with non-finite poses", root, skipped)
    return Frames.from_specs(specs)


def _read_intrinsics(path: Path) -> np.ndarray:
    mat = read_matrix(path)
    try:
        return check_intrinsics(mat)
    except InputError as exc:
        raise exc.at(path) from None


def read_scannet_release(path: str | Path, *, label_set: str | LabelSet = "scannet20",
                         frame_step: int = SCANNET_FRAME_STEP, axis_align: bool = True,
                         image_size: tuple[int, int] | None = None) -> Scan:
    """Read a ScanNet v2 scene folder: the ``_vh_clean_2`` mesh, its labels, alignment and frames.

    Args:
        path: the scene folder (``scans/sceneXXXX_XX``).
        axis_align: apply ``<scene>.txt``'s axisAlignment to points and poses.
        image_size: resize colour frames to ``(W, H)`` on load (e.g. ``(640, 480)``).
    """
    root = Path(path)
    meshes = sorted(root.glob("*_vh_clean_2.ply"))
    if not meshes:
        raise InputError("no <scene>_vh_clean_2.ply in this folder", root)
    mesh_path = meshes[0]
    name = mesh_path.name[: -len("_vh_clean_2.ply")]
    mesh = read_ply(mesh_path)
    ls = get_label_set(label_set)
    labels = None
    label_path = root / f"{name}_vh_clean_2.labels.ply"
    if label_path.is_file():
        lab = read_ply(label_path)
        if len(lab.xyz) != len(mesh.xyz):
            raise InputError(f"has {len(lab.xyz)} vertices but {mesh_path.name} has {len(mesh.xyz)}", label_path)
        if "label" not in lab.properties:
            raise InputError("has no 'label' vertex property", label_path)
        labels = map_labels_at(label_path, lab.properties["label"], ls)
    align = np.eye(4)
    meta_path = root / f"{name}.txt"
    if axis_align and meta_path.is_file():
        align = read_axis_alignment(meta_path)
    xyz = mesh.xyz @ align[:3, :3].T + align[:3, 3]
    normals = None
    if mesh.normals is not None:
        normals = mesh.normals @ align[:3, :3].T.astype(np.float32)
    elif mesh.faces is not None:
        normals = mesh_vertex_normals(torch.from_numpy(xyz), torch.from_numpy(mesh.faces)).numpy()
    frames = None
    if (root / "color").is_dir():
        frames = read_scannet_export_frames(root, frame_step=frame_step, axis_align=align, image_size=image_size)
    scene, est = build_scene(mesh_path, name, xyz, mesh.rgb, normals, labels, ls)
    return Scan(scene, frames, "scannet", root, normals_estimated=est)
