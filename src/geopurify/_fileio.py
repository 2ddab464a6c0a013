"""Atomic file writing: outputs are complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path`` atomically.

    The parent folder is created. If the block raises, the temporary file is removed and
    ``path`` is left untouched.

    Example:
        >>> with atomic_path("out/labels.npy") as tmp:   # doctest: +SKIP
        ...     np.save(tmp, labels)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def find_in_folder(folder: Path, stem: str, extensions: tuple[str, ...], what: str) -> Path:
    """``folder/<stem><ext>`` for the first extension that exists.

    Raises:
        InputError: none exists; the message names ``what`` and the extensions tried.
    """
    for ext in extensions:
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    from .errors import InputError
    raise InputError(f"no {what} ({' or '.join(stem + e for e in extensions)})", folder)
