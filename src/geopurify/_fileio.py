"""Atomic file writing: outputs are complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path`` atomically.

    The parent folder is created. If the block raises, the temporary file is removed and
    ``path`` is left untouched. Only a regular file is ever replaced (:func:`check_output_file`).

    Example:
        >>> with atomic_path("out/labels.npy") as tmp:   # doctest: +SKIP
        ...     np.save(tmp, labels)
    """
    with atomic_paths(path) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike[str]) -> Iterator[list[Path]]:
    """:func:`atomic_path` for files that belong together: yield one temporary path each; when the block
    succeeds, move them all into place, in the order given (put a manifest last); when it raises, remove
    every temporary file and leave all targets untouched."""
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(_temporary(Path(p))) for p in paths]
        yield tmps
        for tmp, p in zip(tmps, paths):
            os.replace(tmp, p)


@contextlib.contextmanager
def _temporary(path: Path) -> Iterator[Path]:
    path = check_output_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())                      # as open() would create it, not mkstemp's 0600
    os.close(fd)
    try:
        yield Path(tmp_name)
    finally:
        Path(tmp_name).unlink(missing_ok=True)            # gone after a successful move, or on failure


def file_digest(path: str | os.PathLike[str]) -> dict[str, object]:
    """``{"bytes": size, "sha256": hex}`` of a file (what a manifest records)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return {"bytes": Path(path).stat().st_size, "sha256": h.hexdigest()}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that :func:`atomic_path` leaves when its process is killed
    (``.<name>.<random>.tmp<suffix>``). Only safe while no other process writes in ``folder`` (hold its
    :class:`RunLock`)."""
    removed = []
    for p in Path(folder).glob(".*.tmp*"):
        if p.is_file() and re.fullmatch(r"\..+\.[A-Za-z0-9_]{6,}\.tmp.*", p.name):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


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
    raise InputError(f"no {what} ({' or '.join(stem + e for e in extensions)})", folder)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
MAX_NAME = 100


def safe_name(name: str) -> str:
    """A name taken from a file (a scene's) as one safe path component.

    The rule: every character other than ASCII letters, digits, ``.``, ``_`` and ``-`` becomes ``_``,
    leading dots are removed (no ``..``, no hidden files), at most 100 characters are kept, and a name
    left empty becomes ``scan``.
    """
    out = _UNSAFE.sub("_", str(name)).lstrip(".")[:MAX_NAME]
    return out or "scan"


def output_path(folder: str | os.PathLike[str], name: str) -> Path:
    """``folder/name`` after checking that it resolves inside ``folder`` (``name`` from :func:`safe_name` plus a
    suffix).

    Raises:
        InputError: the path would leave the folder.
    """
    root = Path(folder)
    path = root / name
    if root.resolve() not in (path.resolve(), *path.resolve().parents):
        raise InputError(f"output name {name!r} leaves the output folder", root)
    return path


def check_output_file(path: str | os.PathLike[str]) -> Path:
    """Refuse, before any work, an output file that cannot be written atomically: an existing thing that is not
    a regular file (a folder, a device such as ``/dev/null``, a socket), or a parent that is not a folder.

    Raises:
        InputError: naming the path and what is in the way.
    """
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not path.is_file():
        raise InputError("exists and is not a regular file; refusing to replace it", path)
    _check_first_existing(path, path.parents)
    return path


def _check_first_existing(path: Path, folders: Iterable[Path]) -> None:
    """The first of ``folders`` that exists must be a writable folder (where ``path`` will be created)."""
    for folder in folders:
        if folder.exists():
            if not folder.is_dir():
                raise InputError(f"cannot write here: {folder} is not a folder", path)
            if not os.access(folder, os.W_OK):
                raise InputError(f"cannot write here: {folder} is not writable", path)
            return


def check_output_dir(path: str | os.PathLike[str]) -> Path:
    """Refuse, before any work, an output folder that exists as something else, or under a file.

    Raises:
        InputError: naming the path and what is in the way.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError("exists and is not a folder", path)
    _check_first_existing(path, (path, *path.parents))
    return path


class RunLock:
    """An exclusive lock on a run folder: ``<folder>/.lock`` holds the owner's pid and host.

    A second process is refused; a lock left by a process that no longer runs on this host is taken over
    with a warning. Used as a context manager; the lock file is removed on exit.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / ".lock"
        self.owner = {"pid": os.getpid(), "host": socket.gethostname()}

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                held = self._holder()
                if held.get("host") == self.owner["host"] and not _alive(held.get("pid")):
                    logging.getLogger("geopurify").warning("%s: taking over the lock of process %s, which no longer "
                                                           "runs", self.path.parent, held.get("pid"))
                    self.path.unlink(missing_ok=True)
                    continue
                raise InputError(f"is in use by process {held.get('pid')} on {held.get('host')} (another run is "
                                 f"writing here; if it is gone, remove {self.path.name})", self.path.parent) from None
            with os.fdopen(fd, "w") as fh:
                json.dump(self.owner, fh)
            return self
        raise InputError("could not take the lock", self.path)

    def _holder(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def __exit__(self, *exc: object) -> None:
        if self._holder() == self.owner:
            self.path.unlink(missing_ok=True)


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
