"""Record3D captures: ``.r3d`` files (the iPhone/iPad app's own export) and its "EXR + JPG" export folder;
both need the ``capture`` extra (LZFSE, OpenEXR).

An ``.r3d`` is a zip holding ``metadata`` (JSON: ``w h`` colour size (not needed), ``dw dh`` depth size, ``K`` the
colour intrinsics as 9 numbers in column-major order, ``poses`` one ``[qx, qy, qz, qw, tx, ty, tz]`` per
frame), ``rgbd/<i>.jpg`` colour, ``rgbd/<i>.depth`` (LZFSE-compressed float32 metres at the depth size:
256x192 LiDAR, 640x480 FaceID) and, for LiDAR, ``rgbd/<i>.conf`` (not used). Sources: ConceptGraphs
``preprocess_r3d_file.py``, Record3D issue #80, nerfstudio ``record3d_utils.py``. Source convention:
camera-to-world with an ARKit (OpenGL) camera, converted by ``cam_to_world @ OPENGL_TO_OPENCV``; the
world keeps Record3D's axes (y up). Frames are read from the zip one at a time.

The EXR + JPG export is a folder of ``metadata.json`` (the same ``K`` column-major, ``w h``, ``poses``),
``rgb/<i>.jpg`` and ``depth/<i>.exr`` (float32 metres, one channel, at the depth size), as nerfstudio's
``process_data.py`` / ``record3d_utils.py`` read it (frame ``i`` is pose ``i``). nerfstudio replaces the
principal point by ``(w/2, h/2)`` and ``fy`` by ``fx`` to work around an indexing bug of its own; here the
metadata's ``K`` is used as stored, as for ``.r3d`` (the depth frames keep it scaled to their size).
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..._optional import require
from ...camera import OPENGL_TO_OPENCV, check_intrinsics, pose_matrix, quaternion_to_matrix
from ...errors import InputError
from ..frames import Frame, Frames, FrameSpec
from ._capture import CLOUD_FRAME_STEP, capture_scan, existing, read_json, valid_poses
from ._common import Scan


@dataclass(frozen=True)
class R3DFrameSpec(FrameSpec):
    """One frame inside an ``.r3d`` zip (``color_path``/``depth_path`` name ``<file>.r3d/rgbd/<i>.*``)."""

    archive: Path | None = None
    index: int = 0
    depth_size: tuple[int, int] = (0, 0)

    def load(self) -> Frame:
        assert self.archive is not None
        lzfse = require("lzfse", "capture", feature="reading Record3D .r3d depth")
        with _open_zip(self.archive) as z:
            jpg = _member(z, self.archive, f"rgbd/{self.index}.jpg")
            raw = _member(z, self.archive, f"rgbd/{self.index}.depth")
        try:
            with Image.open(io.BytesIO(jpg)) as im:
                image = torch.from_numpy(np.asarray(im.convert("RGB")).copy())
        except (OSError, SyntaxError, ValueError) as exc:
            raise InputError(f"rgbd/{self.index}.jpg is not a readable image ({exc})", self.archive) from None
        try:
            depth = np.frombuffer(lzfse.decompress(raw), dtype=np.float32)
        except Exception as exc:  # noqa: BLE001 - the binding raises its own error types on corrupt data
            raise InputError(f"rgbd/{self.index}.depth is not LZFSE-compressed float32 ({exc})", self.archive) from None
        w, h = self.depth_size
        if depth.size != w * h:
            raise InputError(f"rgbd/{self.index}.depth holds {depth.size} values, expected dw x dh = {w}x{h}",
                             self.archive)
        try:
            return Frame(self.name, image, self.intrinsics, self.cam_to_world, torch.from_numpy(depth.reshape(h, w).copy()))
        except InputError as exc:
            raise InputError(f"rgbd/{self.index}: {exc.problem}", self.archive) from None


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"not a Record3D .r3d file: not a zip archive ({exc})", path) from None


def _member(z: zipfile.ZipFile, path: Path, name: str) -> bytes:
    try:
        return z.read(name)
    except KeyError:
        raise InputError(f"{name} is listed in metadata but missing from the archive", path) from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(f"{name} cannot be read ({exc})", path) from None


def _metadata(meta: dict, path: Path, need: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Colour ``K`` (3, 3), OpenCV ``cam_to_world`` poses (N, 4, 4) and the indices of the usable ones, from
    Record3D metadata (``K`` column-major, ``poses`` = ``qx qy qz qw tx ty tz``); ``need``: other required keys."""
    missing = [key for key in ("K", "poses", *need) if key not in meta]
    if missing:
        raise InputError(f"Record3D metadata lacks {', '.join(missing)}", path)
    try:
        K = np.asarray(meta["K"], dtype=np.float64).reshape(3, 3).T       # column-major
        poses7 = np.asarray(meta["poses"], dtype=np.float64).reshape(-1, 7)
    except (TypeError, ValueError) as exc:
        raise InputError(f"Record3D metadata K (9 numbers) or poses (7 per frame) malformed ({exc})", path) from None
    if len(poses7) == 0:
        raise InputError("Record3D metadata has no poses", path)
    try:
        K = check_intrinsics(K, "metadata K")
    except InputError as exc:
        raise exc.at(path) from None
    with np.errstate(invalid="ignore", divide="ignore"):
        poses = pose_matrix(quaternion_to_matrix(poses7[:, :4]), poses7[:, 4:]) @ OPENGL_TO_OPENCV
    return K, poses, valid_poses(list(poses), [f"pose {i}" for i in range(len(poses))], path)


def read_record3d_frames(path: str | Path, *, frame_step: int = 1) -> Frames:
    """Frames of a Record3D ``.r3d`` file (every ``frame_step``-th pose of its metadata)."""
    path = Path(path)
    with _open_zip(path) as z:
        if "metadata" not in z.namelist():
            raise InputError("not a Record3D .r3d file: the zip has no 'metadata' entry", path)
        try:
            meta = json.loads(z.read("metadata"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"Record3D metadata is not valid JSON ({exc})", path) from None
    if not isinstance(meta, dict):
        raise InputError("Record3D metadata is not a JSON object", path)
    K, poses, keep = _metadata(meta, path, ("dw", "dh"))
    try:
        dw, dh = int(meta["dw"]), int(meta["dh"])
    except (TypeError, ValueError) as exc:
        raise InputError(f"Record3D metadata dw/dh are not integers ({exc})", path) from None
    specs = [R3DFrameSpec(name=f"{i:06d}", color_path=path / f"rgbd/{i}.jpg", intrinsics=K, cam_to_world=poses[i],
                          depth_path=path / f"rgbd/{i}.depth", archive=path, index=i,
                          depth_size=(dw, dh))
             for i in keep[::frame_step]]
    return Frames.from_specs(specs)


def read_record3d(path: str | Path, *, frame_step: int = 1, cloud_frame_step: int = CLOUD_FRAME_STEP,
                  voxel_size: float = 0.02) -> Scan:
    """Read a Record3D ``.r3d``: its frames and a cloud fused from their depth."""
    path = Path(path)
    return capture_scan(path, path.stem, "record3d", read_record3d_frames(path), frame_step=frame_step,
                        cloud_frame_step=cloud_frame_step, voxel_size=voxel_size)


def is_record3d_export(root: Path) -> bool:
    """A Record3D "EXR + JPG" export folder: ``metadata.json`` next to ``rgb/`` and ``depth/``."""
    return root.is_dir() and (root / "metadata.json").is_file() and (root / "rgb").is_dir() \
        and (root / "depth").is_dir()


def read_record3d_export_frames(root: str | Path, *, frame_step: int = 1) -> Frames:
    """Frames of a Record3D EXR + JPG export folder (every ``frame_step``-th usable pose of ``metadata.json``).

    Raises:
        InputError: naming ``metadata.json`` when it is unreadable or lacks ``K``/``poses``, or the
            ``rgb/<i>.jpg`` / ``depth/<i>.exr`` of a listed frame that is missing.
    """
    root = Path(root)
    meta_path = root / "metadata.json"
    K, poses, keep = _metadata(read_json(meta_path), meta_path)
    specs = [FrameSpec(name=f"{i:06d}", color_path=existing(root / "rgb" / f"{i}.jpg", f"frame {i}", meta_path),
                       intrinsics=K, cam_to_world=poses[i], depth_scale=1.0,
                       depth_path=existing(root / "depth" / f"{i}.exr", f"frame {i}", meta_path))
             for i in keep[::frame_step]]
    return Frames.from_specs(specs)


def read_record3d_export(root: str | Path, *, frame_step: int = 1, cloud_frame_step: int = CLOUD_FRAME_STEP,
                         voxel_size: float = 0.02) -> Scan:
    """Read a Record3D EXR + JPG export folder: its frames and a cloud fused from their depth."""
    root = Path(root)
    return capture_scan(root, root.name, "record3d-exr", read_record3d_export_frames(root), frame_step=frame_step,
                        cloud_frame_step=cloud_frame_step, voxel_size=voxel_size)
