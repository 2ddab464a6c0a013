"""``.npy`` arrays from files people bring: no pickles, headers checked against the file, errors naming it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError


def _check_npy_header(path: Path) -> None:
    """An ``.npy`` header must not claim more data than the file holds (checked before allocating)."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(fh)
            data = path.stat().st_size - fh.tell()
    except Exception:  # noqa: BLE001 - numpy's header parser raises anything on garbage; np.load reports it
        return
    need = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if need > data:
        raise InputError(f"its header claims a {shape} {dtype} array ({need:,} bytes) but the file holds {data:,}", path)


def load_npy(path: Path) -> np.ndarray:
    """``np.load`` without pickles; errors name the file."""
    _check_npy_header(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except Exception as exc:  # noqa: BLE001 - any failure to parse untrusted bytes is a bad file
        raise InputError(f"not a readable .npy array ({type(exc).__name__}: {exc})", path) from None
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise InputError("holds an .npz archive, not one .npy array", path)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"holds {arr.dtype} values, expected numbers", path)
    if arr.size == 0:
        raise InputError(f"is empty (shape {arr.shape})", path)
    return arr
