"""Student checkpoints: one module writes and reads them (training, resume, inference).

A checkpoint describes itself. Its student record holds::

    kind "geopurify-student", version 2, config (StudentConfig fields), state_dict,
    voxel_size (metres: the grid it was trained on and must run on),
    features (FeatureSource: encoder, dim, text encoder, vocabulary, fusion of the lifted features),
    versions (geopurify, torch)

:func:`save_student` writes that record alone (a weights-only file). Training writes
``{"format": "geopurify-student", "version": 2, "student": record, "train_config", "epoch", "history",
"best", "scenes"}`` to ``best.pt``, and to ``last.pt`` also the training state needed to resume
(``optimizer``, ``scheduler``). Everything is written atomically and read with ``weights_only=True``.
Version-1 checkpoints (before the voxel size and the features were recorded) still load: their voxel
size is the training config's (else 2 cm) and their features are "unknown" of the config's size.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from .._fileio import atomic_path
from .._validate import all_finite
from .._version import __version__
from ..errors import InputError
from ..lifting.lifted import FeatureSource
from .network import GEOMETRIC_DIM, StudentAffinityNet, StudentConfig

KIND = "geopurify-student"
VERSION = 2


def student_record(model: StudentAffinityNet) -> dict[str, Any]:
    """The self-describing student part of a checkpoint (module docstring), weights on CPU."""
    return {"kind": KIND, "version": VERSION, "config": asdict(model.config),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "voxel_size": model.voxel_size, "features": model.features.to_dict(),
            "versions": {"geopurify": __version__, "torch": str(torch.__version__)}}


def save_student(model: StudentAffinityNet, path: str | os.PathLike[str]) -> None:
    """Write a weights-only student checkpoint (the student record), atomically."""
    with atomic_path(path) as tmp:
        torch.save(student_record(model), tmp)


def save_training_checkpoint(path: str | os.PathLike[str], model: StudentAffinityNet, **training: Any) -> None:
    """Write a training checkpoint: the student record plus ``training``'s entries, atomically."""
    with atomic_path(path) as tmp:
        torch.save({"format": KIND, "version": VERSION, "student": student_record(model), **training}, tmp)


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A checkpoint as read: its ``student`` record and the ``training`` entries beside it (empty for a
    weights-only file)."""

    path: Path
    student: dict[str, Any]
    training: dict[str, Any]

    def config(self) -> StudentConfig:
        """The student config; fields that later versions added take their defaults.

        Raises:
            InputError: fields this version does not know, or invalid values.
        """
        raw = dict(self.student["config"])
        geometric = raw.pop("geometric_dim", GEOMETRIC_DIM)          # a field of version 1, always 6
        known = {f.name for f in fields(StudentConfig)}
        try:
            if geometric != GEOMETRIC_DIM or set(raw) - known:
                raise TypeError(f"unknown fields {sorted(set(raw) - known)}" if set(raw) - known
                                else f"geometric_dim {geometric} (this version reads {GEOMETRIC_DIM})")
            return StudentConfig(**raw)
        except (TypeError, ValueError) as exc:
            raise InputError(f"unreadable student config ({exc})", self.path) from None

    @property
    def voxel_size(self) -> float:
        if "voxel_size" in self.student:
            return float(self.student["voxel_size"])
        return float(self.training.get("train_config", {}).get("voxel_size", 0.02))

    @property
    def features(self) -> FeatureSource:
        if "features" in self.student:
            return FeatureSource.from_dict(self.student["features"])
        return FeatureSource("unknown", int(self.student["config"]["semantic_dim"]))

    def _check_size(self, config: StudentConfig) -> None:
        """The config must describe the stored weights before anything is allocated (a config claiming
        100,000 blocks beside a few MB of weights is refused, not built)."""
        sd = self.student["state_dict"]
        for field_name, prefix in (("blocks", "blocks."), ("levels", "down.")):
            stored = len({k.split(".")[1] for k in sd if k.startswith(prefix)})
            if stored != getattr(config, field_name):
                raise InputError(f"its config says {field_name}={getattr(config, field_name)} but the weights hold "
                                 f"{stored}", self.path)
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in StudentAffinityNet(config).state_dict().items()}
        stored_shapes = {k: tuple(v.shape) for k, v in sd.items() if isinstance(v, torch.Tensor)}
        if shapes != stored_shapes:
            diff = sorted(set(shapes.items()) ^ set(stored_shapes.items()))[:3]
            raise InputError(f"weights do not match the stored config (e.g. {diff})", self.path)

    def build(self) -> StudentAffinityNet:
        """The student with its weights, voxel size and feature source (train mode, on CPU)."""
        config = self.config()
        self._check_size(config)
        try:
            model = StudentAffinityNet(config, voxel_size=self.voxel_size, features=self.features)
        except (TypeError, ValueError) as exc:
            raise InputError(f"unreadable student record ({exc})", self.path) from None
        bad = [k for k, v in self.student["state_dict"].items() if isinstance(v, torch.Tensor) and not all_finite(v)]
        if bad:
            raise InputError(f"has NaN or inf weights ({', '.join(bad[:3])}{'...' if len(bad) > 3 else ''})", self.path)
        try:
            model.load_state_dict(self.student["state_dict"])
        except RuntimeError as exc:
            raise InputError(f"weights do not match the stored config: {exc}", self.path) from None
        return model


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read any student checkpoint this package wrote (module docstring), without arbitrary unpickling.

    Raises:
        InputError: missing file, unreadable file, not a geopurify student checkpoint, or a newer format.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("student checkpoint not found", path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise InputError(f"cannot read checkpoint ({type(exc).__name__}: {exc})", path) from None
    record = ckpt.get("student", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(record, dict) or record.get("kind") != KIND or "config" not in record:
        raise InputError("not a geopurify student checkpoint", path)
    if not isinstance(record.get("version", 0), int):
        raise InputError(f"checkpoint format version {record.get('version')!r} is not a number", path)
    if int(record.get("version", 0)) > VERSION:
        raise InputError(f"checkpoint format {record['version']} is newer than this geopurify supports", path)
    training = {k: v for k, v in ckpt.items() if k not in ("student", "format", "version")} if record is not ckpt else {}
    return Checkpoint(path, record, training)


def load_student(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> StudentAffinityNet:
    """Load a student from ``best.pt``/``last.pt`` or a :func:`save_student` file; eval mode, on ``device``.
    Its ``voxel_size`` and ``features`` come from the checkpoint.

    Raises:
        InputError: see :func:`read_checkpoint`, or an unreadable config or mismatching weights.
    """
    return read_checkpoint(path).build().to(device).eval()
