"""Matterport3D regions with their undistorted frames, read as OpenScene / GeoPurify read them
(``scripts/preprocess/preprocess_3d_matterport.py``, ``preprocess_2d_matterport.py`` and the loader's
camera selection; GEOPURIFY_SPEC.md §1.2, §1.4).

Files of a house ``scans/<house>/`` (niessner/Matterport ``data_organization.md``):
``region_segmentations/region<N>.ply`` (a mesh: vertices ``x y z nx ny nz tx ty red green blue``, faces
``vertex_indices material_id segment_id category_id``), ``undistorted_color_images/<pano>_i<c>_<y>.jpg``,
``undistorted_depth_images/<pano>_d<c>_<y>.png`` (uint16, metres x 4000) and
``undistorted_camera_parameters/<house>.conf``: an ``intrinsics_matrix fx 0 cx 0 fy cy 0 0 1`` line applies
to the ``scan <depth> <color> <16 numbers>`` lines after it. Source convention: the 16 numbers are a
row-major camera-to-world with an OpenGL camera (x right, y up, looking down -z); ``@ OPENGL_TO_OPENCV``
negates columns 1 and 2, as ``preprocess_2d_matterport.py`` does. Only cameras strictly inside the
region's bounding box are kept, or the :data:`NEAREST_CAMERAS` nearest its centre when none are.

Labels: a face's ``category_id`` (-1 = none) is the ``index`` column of Matterport's
``metadata/category_mapping.tsv`` (shipped with the dataset's code, not with the scans: put it in the house
folder or in ``scans/``, or pass ``category_mapping=``); its ``nyu40id`` column gives the NYU40 id. A vertex
takes the class most of its faces vote for, in ``label_set`` order, "no class of the set" counting as a
vote and winning ties (so ``matterport21`` reproduces OpenScene's labels, ceiling = 20).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ...camera import OPENGL_TO_OPENCV, check_intrinsics
from ...errors import InputError
from ...geometry import mesh_vertex_normals
from ...labels import LabelSet, get_label_set
from ..frames import Frames, FrameSpec
from ..ply import read_ply
from ._capture import existing, valid_poses
from ._common import Scan, build_scene, map_labels_at

log = logging.getLogger("geopurify.io")

MATTERPORT_DEPTH_SCALE = 4000.0
NEAREST_CAMERAS = 100            # as GeoPurify's readMatterport3DInfo
CATEGORY_MAPPING = "category_mapping.tsv"


def is_matterport_region(path: Path) -> bool:
    """Whether ``path`` is ``<house>/region_segmentations/<region>.ply`` with the house's camera parameters."""
    return (path.suffix.lower() == ".ply" and path.parent.name == "region_segmentations"
            and (path.parent.parent / "undistorted_camera_parameters").is_dir())


def read_conf(path: Path) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """``(depth name, colour name, K (3, 3), Matterport cam_to_world (4, 4))`` per ``scan`` line of a ``.conf``."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", path) from None
    K, out = None, []
    for n, line in enumerate(lines, 1):
        tok = line.split()
        if not tok or tok[0] not in ("intrinsics_matrix", "scan"):
            continue
        try:
            if tok[0] == "intrinsics_matrix":
                if len(tok) != 10:
                    raise ValueError(f"needs 9 numbers, got {len(tok) - 1}")
                K = check_intrinsics(np.array(tok[1:], dtype=np.float64).reshape(3, 3), f"line {n} intrinsics")
                continue
            if len(tok) != 19:
                raise ValueError(f"needs a depth name, a colour name and 16 numbers, got {len(tok) - 1} fields")
            if K is None:
                raise ValueError("comes before any intrinsics_matrix line")
            out.append((tok[1], tok[2], K, np.array(tok[3:], dtype=np.float64).reshape(4, 4)))
        except ValueError as exc:
            raise InputError(f"line {n} ({tok[0]}): {exc}", path) from None
        except InputError as exc:
            raise exc.at(path) from None
    if not out:
        raise InputError("has no 'scan' lines", path)
    return out


def select_region_cameras(positions: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                          nearest: int = NEAREST_CAMERAS) -> np.ndarray:
    """Indices (ascending) of the cameras strictly inside the box ``[lo, hi]``, or else of the ``nearest``
    cameras closest to its centre. ``positions`` ``(P, 3)`` metres."""
    inside = np.flatnonzero(((positions > lo) & (positions < hi)).all(1))
    if len(inside):
        return inside
    dist = np.linalg.norm(positions - (lo + hi) / 2, axis=1)
    return np.sort(np.argsort(dist, kind="stable")[:nearest])


def _conf_path(house: Path) -> Path:
    folder = house / "undistorted_camera_parameters"
    own = folder / f"{house.name}.conf"
    confs = sorted(folder.glob("*.conf"))
    if own.is_file() or len(confs) != 1:
        return own
    return confs[0]


def read_matterport_frames(house: str | Path, *, bounds: tuple[np.ndarray, np.ndarray] | None = None,
                           frame_step: int = 1, image_size: tuple[int, int] | None = None) -> Frames:
    """Frames of a Matterport3D house folder: the cameras of ``bounds`` (:func:`select_region_cameras`;
    None: all), every ``frame_step``-th in ``.conf`` order, colour resized to ``image_size`` ``(W, H)``
    if given (OpenScene uses ``(640, 512)``)."""
    house = Path(house)
    conf = _conf_path(house)
    rows = read_conf(conf)
    poses = [T @ OPENGL_TO_OPENCV for _, _, _, T in rows]
    keep = valid_poses(poses, [r[1] for r in rows], conf)
    if bounds is not None:
        centres = np.stack([poses[i][:3, 3] for i in keep])
        keep = [keep[j] for j in select_region_cameras(centres, *bounds)]
    specs = []
    for i in keep[::frame_step]:
        depth, color, K, _ = rows[i]
        specs.append(FrameSpec(
            name=Path(color).stem, intrinsics=K, cam_to_world=poses[i],
            color_path=existing(house / "undistorted_color_images" / color, "colour image", conf),
            depth_path=existing(house / "undistorted_depth_images" / depth, "depth image", conf),
            depth_scale=MATTERPORT_DEPTH_SCALE, image_size=image_size))
    return Frames.from_specs(specs)


def read_category_mapping(path: Path) -> np.ndarray:
    """NYU40 id per Matterport category index (``(I + 1,) int64``, entry 0 = unlabelled = 0) from the
    ``index`` and ``nyu40id`` columns of ``category_mapping.tsv``; an empty ``nyu40id`` is 0."""
    try:
        lines = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", path) from None
    header = [h.strip() for h in lines[0]] if lines else []
    if "index" not in header or "nyu40id" not in header:
        raise InputError(f"needs 'index' and 'nyu40id' columns, has {header[:6]}", path)
    ci, cn = header.index("index"), header.index("nyu40id")
    pairs = []
    for n, row in enumerate(lines[1:], 2):
        try:
            nyu = row[cn].strip() if cn < len(row) else ""
            pairs.append((int(row[ci]), int(float(nyu)) if nyu else 0))
        except (ValueError, IndexError):
            raise InputError(f"line {n}: index {row[ci] if ci < len(row) else ''!r} / nyu40id "
                             f"{row[cn] if cn < len(row) else ''!r} are not integers", path) from None
    if not pairs or min(i for i, _ in pairs) < 1:
        raise InputError("needs rows with index 1, 2, ...", path)
    table = np.zeros(max(i for i, _ in pairs) + 1, dtype=np.int64)
    for i, nyu in pairs:
        table[i] = nyu
    return table


def vote_vertex_labels(faces: np.ndarray, face_nyu40: np.ndarray, num_vertices: int, label_set: LabelSet,
                       where: Path) -> torch.Tensor:
    """``(N,) int64`` class of each vertex: the majority over its faces' classes (``(F, 3)`` faces, ``(F,)``
    NYU40 ids), with "not in the set" as one more candidate that wins ties; -1 where that wins."""
    face_cls = map_labels_at(where, face_nyu40, label_set) + 1                     # 0 = not in the set
    votes = torch.zeros(num_vertices, label_set.num_classes + 1, dtype=torch.int64)
    f = torch.from_numpy(faces.astype(np.int64))
    for k in range(f.shape[1]):
        votes.index_put_((f[:, k], face_cls), torch.ones(len(f), dtype=torch.int64), accumulate=True)
    return votes.argmax(1) - 1                                                     # first maximum wins ties


def _face_categories(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from plyfile import PlyData

    ply = PlyData.read(str(path))
    if "face" not in [e.name for e in ply.elements]:
        raise InputError("region PLY has no faces (their category_id carries the labels)", path)
    face = ply["face"].data
    if "category_id" not in face.dtype.names:
        raise InputError(f"region PLY faces have no category_id (face properties: {list(face.dtype.names)})", path)
    polys = face["vertex_indices"]
    if not all(len(p) == 3 for p in polys):
        raise InputError("region PLY faces must be triangles", path)
    return np.stack(polys).astype(np.int64), np.asarray(face["category_id"]).astype(np.int64)


def _tsv_of(house: Path, given: str | Path | None) -> Path | None:
    if given is not None:
        return Path(given)
    return next((p for p in (house / CATEGORY_MAPPING, house.parent / CATEGORY_MAPPING) if p.is_file()), None)


def read_matterport(path: str | Path, *, label_set: str | LabelSet = "matterport21",
                    category_mapping: str | Path | None = None, frame_step: int = 1,
                    image_size: tuple[int, int] | None = None) -> Scan:
    """Read a Matterport3D region ``<house>/region_segmentations/<region>.ply`` with the house's frames.

    Args:
        label_set: a label set over NYU40 ids (``matterport21``, ``nyu40``, ``scannet20``).
        category_mapping: Matterport's ``category_mapping.tsv``; default: the house folder's or ``scans/``'s;
            without one the region has no labels.
        frame_step, image_size: see :func:`read_matterport_frames`.
    """
    path = Path(path)
    house = path.parent.parent
    ply = read_ply(path)
    ls = get_label_set(label_set)
    labels, tsv = None, _tsv_of(house, category_mapping)
    if tsv is None:
        log.info("%s: no %s in %s or %s; the region is read without labels", path, CATEGORY_MAPPING, house,
                 house.parent)
    else:
        if ls.source != "nyu40":
            raise InputError(f"label set {ls.name!r} is over {ls.source} ids; Matterport3D categories map to "
                             "NYU40 (use matterport21 or nyu40)", tsv)
        table = read_category_mapping(existing(tsv, "category mapping", path))
        faces, cat = _face_categories(path)
        if cat.min(initial=0) < -1 or cat.max(initial=0) >= len(table):
            raise InputError(f"face category_id outside -1..{len(table) - 1} (the rows of {tsv.name})", path)
        labels = vote_vertex_labels(faces, table[np.maximum(cat, 0)], len(ply.xyz), ls, path)
    lo, hi = ply.xyz.min(0), ply.xyz.max(0)
    frames = read_matterport_frames(house, bounds=(lo, hi), frame_step=frame_step, image_size=image_size)
    normals = ply.normals                   # GeoPurify's .pth: area-weighted normals of the faces
    if ply.faces is not None:
        normals = mesh_vertex_normals(torch.from_numpy(ply.xyz), torch.from_numpy(ply.faces)).numpy()
    scene, est = build_scene(path, f"{house.name}_{path.stem}", ply.xyz, ply.rgb, normals, labels, ls,
                             viewpoint=frames.poses[:, :3, 3].to(torch.float32))
    return Scan(scene, frames, "matterport", path, normals_estimated=est)
