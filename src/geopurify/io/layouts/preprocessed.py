"""Preprocessed scenes: OpenScene/GeoPurify ``.pth`` tuples and Pointcept folders.

* ``.pth`` (``torch.save`` of numpy arrays): ``(coords, colors, labels)`` for ScanNet, with colours
  in [-1, 1] (``rgb / 127.5 - 1``) and labels 0..19 (255 or -100 = ignore); or
  ``(coords, colors, normals, labels)`` for Matterport3D (labels 0..20, ceiling = 20). Read with
  ``torch.load(weights_only=True)``: only numpy arrays are unpickled, never arbitrary objects.
* Pointcept folder: ``coord.npy``, ``color.npy`` (0..255), ``normal.npy`` (optional),
  ``segment20.npy`` / ``segment200.npy`` (-1 = ignore), ``instance.npy`` (optional).
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import torch

from ...errors import InputError
from ...labels import LabelSet, get_label_set
from ..arrays import load_npy
from ._common import Scan, build_scene

PTH_IGNORE = (255, -100)


def _numpy_safe_globals() -> list[object]:
    """numpy's array-reconstruction globals, under both their numpy 1 and numpy 2 module names."""
    rebuild = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's _reconstruct, wherever it lives
    out: list[object] = [np.ndarray, np.dtype, rebuild,
                         (rebuild, "numpy.core.multiarray._reconstruct"),
                         (rebuild, "numpy._core.multiarray._reconstruct")]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles dtype classes, e.g. Float32DType
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return out


def load_pth_tuple(path: Path) -> tuple[np.ndarray, ...]:
    """Load a ``.pth`` holding a tuple/list of arrays, refusing anything but arrays and tensors."""
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"refused to unpickle: the file holds more than plain arrays ({first})", path) from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
        raise InputError(f"not a readable .pth file ({type(exc).__name__}: {exc})", path) from None
    if not isinstance(obj, (tuple, list)) or not all(isinstance(a, (np.ndarray, torch.Tensor)) for a in obj):
        raise InputError("expected a tuple of arrays (coords, colors, [normals,] labels)", path)
    return tuple(a.numpy() if isinstance(a, torch.Tensor) else a for a in obj)


def read_pth(path: str | Path, *, label_set: str | LabelSet | None = None) -> Scan:
    """Read an OpenScene/GeoPurify ``.pth`` scene.

    Args:
        label_set: the label set of the stored indices; default ``scannet20`` for 3-tuples and
            ``matterport21`` for 4-tuples.
    """
    path = Path(path)
    arrays = load_pth_tuple(path)
    if len(arrays) == 3:
        coords, colors, labels = arrays
        normals = None
        default_ls = "scannet20"
    elif len(arrays) == 4:
        coords, colors, normals, labels = arrays
        default_ls = "matterport21"
    elif len(arrays) == 2:
        coords, colors = arrays
        normals = labels = None
        default_ls = "scannet20"
    else:
        raise InputError(f"expected 2, 3 or 4 arrays, got {len(arrays)}", path)
    ls = get_label_set(label_set or default_ls)
    coords = np.asarray(coords)
    n = len(coords)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise InputError(f"coords must be (N, 3), got {coords.shape}", path)
    colors = np.asarray(colors, dtype=np.float32)
    if colors.shape != (n, 3):
        raise InputError(f"colors must be ({n}, 3), got {colors.shape}", path)
    if colors.min() < -1.0001 or colors.max() > 1.0001:
        raise InputError("colors must be in [-1, 1] (rgb / 127.5 - 1)", path)
    rgb = np.clip((colors + 1) / 2, 0, 1)
    if normals is not None and np.asarray(normals).shape != (n, 3):
        raise InputError(f"normals must be ({n}, 3), got {np.asarray(normals).shape}", path)
    lab = None
    if labels is not None:
        raw = np.asarray(labels)
        if raw.shape != (n,):
            raise InputError(f"labels must be ({n},), got {raw.shape}", path)
        lab = raw.astype(np.int64)
        lab[np.isin(lab, PTH_IGNORE)] = ls.ignore_index
    scene, est = build_scene(path, path.stem.replace("_vh_clean_2", ""), coords, rgb, normals, lab, ls)
    return Scan(scene, None, "pth", path, normals_estimated=est)


def is_pointcept(root: Path) -> bool:
    return root.is_dir() and (root / "coord.npy").is_file()


def read_pointcept(path: str | Path, *, label_set: str | LabelSet | None = None) -> Scan:
    """Read a Pointcept scene folder; labels from ``segment20.npy`` (ScanNet20) or ``segment200.npy``.

    Args:
        label_set: ``scannet20`` or ``scannet200`` picks the segment file; default: segment20 when
            present, else segment200.
    """
    root = Path(path)
    coord = load_npy(root / "coord.npy")
    if coord.ndim != 2 or coord.shape[1] != 3:
        raise InputError(f"must be (N, 3), got {coord.shape}", root / "coord.npy")
    n = len(coord)

    def optional(name: str, shape: tuple[int, ...]) -> np.ndarray | None:
        p = root / name
        if not p.is_file():
            return None
        arr = load_npy(p)
        if arr.shape != shape:
            raise InputError(f"must have shape {shape} to match coord.npy, got {arr.shape}", p)
        return arr

    color = optional("color.npy", (n, 3))
    rgb = None
    if color is not None:
        if color.min() < 0 or color.max() > 255:
            raise InputError("colours must lie in 0..255", root / "color.npy")
        rgb = color.astype(np.float32) / 255.0
    normal = optional("normal.npy", (n, 3))
    choices = {"scannet20": "segment20.npy", "scannet200": "segment200.npy"}
    if label_set is None:
        label_set = "scannet20" if (root / "segment20.npy").is_file() else "scannet200"
    ls = get_label_set(label_set)
    if ls.name not in choices:
        raise InputError(f"Pointcept folders carry scannet20 or scannet200 labels, not {ls.name}", root)
    seg = optional(choices[ls.name], (n,))
    inst = optional("instance.npy", (n,))
    labels = None if seg is None else seg.astype(np.int64)
    if labels is not None:
        labels[labels < 0] = ls.ignore_index
    scene, est = build_scene(root, root.name, coord, rgb, normal, labels, ls,
                             None if inst is None else np.where(inst < 0, -1, inst))
    return Scan(scene, None, "pointcept", root, normals_estimated=est)
