"""PLY point clouds and meshes (binary or ASCII), read with ``plyfile``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement, PlyParseError

from .._fileio import atomic_path
from ..errors import InputError


@dataclass(frozen=True)
class PlyContents:
    """Raw arrays read from a PLY file (numpy, as stored; no unit conversion).

    Attributes:
        xyz: ``(N, 3) float64``.
        rgb: ``(N, 3) float32`` in [0, 1], or None.
        normals: ``(N, 3) float32`` (not re-normalised), or None.
        faces: ``(F, 3) int64`` triangles (polygons are fan-triangulated), or None.
        properties: every vertex property by name, ``(N,)`` arrays.
    """

    xyz: np.ndarray
    rgb: np.ndarray | None
    normals: np.ndarray | None
    faces: np.ndarray | None
    properties: dict[str, np.ndarray]


def read_ply(path: str | os.PathLike[str]) -> PlyContents:
    """Read vertices (x, y, z, optional red/green/blue, nx/ny/nz, any other property) and faces.

    Colours stored as 8-bit integers are divided by 255, 16-bit by 65535; float colours are taken
    as [0, 1] unless some exceed 1, in which case they are read as 0..255.

    Raises:
        InputError: missing, truncated or corrupt file; no vertex element; missing x/y/z;
            non-finite coordinates; face indices out of range.
    """
    path = Path(path)
    if path.is_file():
        _check_header(path)
    try:
        ply = PlyData.read(str(path))
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except (PlyParseError, ValueError, EOFError, IndexError, KeyError, TypeError, OSError) as exc:
        raise InputError(f"truncated or corrupt PLY ({type(exc).__name__}: {exc})", path) from None
    names = [e.name for e in ply.elements]
    if "vertex" not in names:
        raise InputError(f"PLY has no 'vertex' element (elements: {names})", path)
    vert = ply["vertex"].data
    props = {name: np.asarray(vert[name]) for name in vert.dtype.names}
    if not all(c in props for c in "xyz"):
        raise InputError(f"PLY vertices lack x/y/z (properties: {list(props)})", path)
    if len(vert) == 0:
        raise InputError("PLY has no vertices", path)
    xyz = np.stack([props["x"], props["y"], props["z"]], 1).astype(np.float64)
    if not np.isfinite(xyz).all():
        raise InputError(f"{int((~np.isfinite(xyz)).any(1).sum())} vertices have NaN or inf coordinates", path)
    rgb = None
    for keys in (("red", "green", "blue"), ("r", "g", "b")):
        if all(k in props for k in keys):
            raw = np.stack([props[k] for k in keys], 1)
            if raw.dtype.kind in "ui":
                rgb = raw.astype(np.float32) / float(np.iinfo(raw.dtype).max)
            else:
                rgb = raw.astype(np.float32)
                if np.nanmax(rgb) > 1.0:
                    rgb = rgb / 255.0
                if not np.isfinite(rgb).all() or rgb.min() < 0 or rgb.max() > 1:
                    raise InputError("vertex colours are not finite values in [0, 1] or [0, 255]", path)
            break
    normals = None
    if all(k in props for k in ("nx", "ny", "nz")):
        normals = np.stack([props["nx"], props["ny"], props["nz"]], 1).astype(np.float32)
    faces = None
    if "face" in names and len(ply["face"].data):
        face_el = ply["face"].data
        key = "vertex_indices" if "vertex_indices" in face_el.dtype.names else face_el.dtype.names[0]
        faces = _triangulate(face_el[key], path)
        if faces.size and (faces.min() < 0 or faces.max() >= len(xyz)):
            raise InputError(f"face indices out of range 0..{len(xyz) - 1}", path)
    return PlyContents(xyz=xyz, rgb=rgb, normals=normals, faces=faces, properties=props)


_SIZES = {"char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2, "int16": 2, "uint16": 2,
          "int": 4, "uint": 4, "int32": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8}


def _check_header(path: Path) -> None:
    """Element counts must fit the file's size (checked before anything is allocated), and an ASCII body
    must not hold more rows than the header declares (plyfile would drop them silently)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        return                                          # plyfile names what is wrong
    body_start = head.index(b"\n", end) + 1 if b"\n" in head[end:] else len(head)
    fmt, elements = "", []                              # [name, count, min bytes per row]
    for line in head[:end].decode("ascii", "replace").splitlines():
        w = line.split()
        if w[:1] == ["format"] and len(w) > 1:
            fmt = w[1]
        elif w[:1] == ["element"] and len(w) == 3 and w[2].isdigit():
            elements.append([w[1], int(w[2]), 0])
        elif w[:1] == ["property"] and elements and len(w) >= 3:
            kind = w[2] if w[1] == "list" else w[1]
            elements[-1][2] += 2 if fmt == "ascii" else _SIZES.get(kind, 1)
    available = path.stat().st_size - body_start
    need = sum(count * max(1, row) for _, count, row in elements)
    if need > available:
        declared = ", ".join(f"{c:,} {n}" for n, c, _ in elements)
        raise InputError(f"truncated or corrupt PLY: its header declares {declared} elements, more than the "
                         f"{available:,} bytes after it can hold", path)
    if fmt == "ascii" and available < (64 << 20):
        rows = sum(1 for line in path.read_bytes()[body_start:].splitlines() if line.strip())
        declared = sum(count for _, count, _ in elements)
        if rows > declared:
            raise InputError(f"has {rows:,} data rows but its header declares {declared:,}", path)


def _triangulate(polys: np.ndarray, path: Path) -> np.ndarray:
    if polys.dtype != object:  # fixed-length lists come back as a 2-D array
        arr = np.asarray(polys, dtype=np.int64)
        if arr.ndim == 2 and arr.shape[1] == 3:
            return arr
        polys = list(arr)
    lengths = np.fromiter((len(p) for p in polys), dtype=np.int64, count=len(polys))
    if (lengths < 3).any():
        raise InputError("PLY face with fewer than 3 vertices", path)
    if (lengths == 3).all():
        return np.stack(list(polys)).astype(np.int64)
    tris = [np.stack([np.full(len(p) - 2, p[0]), p[1:-1], p[2:]], 1) for p in polys]
    return np.concatenate(tris).astype(np.int64)


def write_ply(path: str | os.PathLike[str], xyz: np.ndarray, *, rgb: np.ndarray | None = None,
              normals: np.ndarray | None = None, faces: np.ndarray | None = None,
              scalars: dict[str, np.ndarray] | None = None, binary: bool = True) -> None:
    """Write a PLY point cloud (or mesh) atomically.

    Args:
        xyz: ``(N, 3)`` coordinates (written as float32).
        rgb: ``(N, 3)`` colours, uint8 or float in [0, 1] (written as uchar red/green/blue).
        normals: ``(N, 3)`` (written as float32 nx/ny/nz).
        faces: ``(F, 3)`` triangles.
        scalars: extra per-vertex properties, e.g. ``{"label": labels}`` (dtype kept; int64 is
            written as int32, float64 as float32).
    """
    xyz = np.asarray(xyz)
    n = len(xyz)
    fields: list[tuple[str, np.ndarray]] = [(c, xyz[:, i].astype(np.float32)) for i, c in enumerate("xyz")]
    if normals is not None:
        normals = np.asarray(normals)
        fields += [(c, normals[:, i].astype(np.float32)) for i, c in enumerate(("nx", "ny", "nz"))]
    if rgb is not None:
        rgb = np.asarray(rgb)
        rgb8 = rgb if rgb.dtype == np.uint8 else np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)
        fields += [(c, rgb8[:, i]) for i, c in enumerate(("red", "green", "blue"))]
    for name, values in (scalars or {}).items():
        v = np.asarray(values)
        if v.shape != (n,):
            raise ValueError(f"scalar {name!r} has shape {v.shape}, expected ({n},)")
        v = v.astype({np.dtype(np.int64): np.int32, np.dtype(np.float64): np.float32}.get(v.dtype, v.dtype))
        fields.append((name, v))
    data = np.empty(n, dtype=[(name, arr.dtype) for name, arr in fields])
    for name, arr in fields:
        data[name] = arr
    elements = [PlyElement.describe(data, "vertex")]
    if faces is not None:
        f = np.asarray(faces, dtype=np.int32)
        face_data = np.empty(len(f), dtype=[("vertex_indices", np.int32, (3,))])
        face_data["vertex_indices"] = f
        elements.append(PlyElement.describe(face_data, "face"))
    with atomic_path(path) as tmp:
        PlyData(elements, text=not binary).write(str(tmp))
