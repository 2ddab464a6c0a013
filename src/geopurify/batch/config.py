"""What a batch run does to every scan: the stages and the same settings as the single-scan commands."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._fileio import file_digest
from ..errors import InputError
from ..lifting import LiftConfig
from ..segment import PoolingConfig

if TYPE_CHECKING:
    from ..workflows import EncoderSpec

#: the stages a run can have, in the order they run on a scan
STAGE_ORDER = ("lift", "segment", "evaluate")


@dataclass(frozen=True)
class RunConfig:
    """Settings of a batch run (``geopurify run``), recorded in its manifest.

    A re-run into the same folder must have the same settings (:meth:`to_dict`); the scan list may grow.

    Attributes:
        stages: the stages to run on every scan, a subset of ``lift``, ``segment``, ``evaluate``.
        encoder: the 2D encoder (a :class:`~geopurify.workflows.EncoderSpec`); its ``source`` may hold
            ``{scan}`` (the scan's path) or ``{name}`` (the scan folder's name) for per-scan inputs such as
            mask folders. None: the features come from ``features``.
        vocabulary: the classes of ``segment`` (and of consensus fusion when lifting).
        lift: lifting settings.
        pooling: Geometry-Guided Pooling settings.
        student: student checkpoint (None: uniform pooling weights).
        purify: pool with the student (False: direct projection only).
        features: folder of lifted features ``<scene>.npz`` to use instead of lifting (None: lift).
        other_threshold: label points whose best cosine is below this -1 (other).
        label_set: label set of the scans' labels (evaluation: default scannet20).
        layout: force a scan layout.
        device: where lifting, embedding and pooling run (``cuda`` takes the worker's GPU).
    """

    stages: tuple[str, ...]
    encoder: EncoderSpec | None = None
    vocabulary: tuple[str, ...] | None = None
    lift: LiftConfig = field(default_factory=LiftConfig)
    pooling: PoolingConfig = field(default_factory=PoolingConfig)
    student: str | None = None
    purify: bool = True
    features: str | None = None
    other_threshold: float | None = None
    label_set: str | None = None
    layout: str | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        stages = tuple(self.stages)
        unknown = [s for s in stages if s not in STAGE_ORDER]
        if not stages or unknown:
            raise InputError(f"unknown stages {unknown}; choose from {', '.join(STAGE_ORDER)}" if unknown
                             else "give at least one stage (lift, segment, evaluate)")
        object.__setattr__(self, "stages", tuple(s for s in STAGE_ORDER if s in stages))
        if self.vocabulary is not None:
            object.__setattr__(self, "vocabulary", tuple(self.vocabulary))
        if "segment" in self.stages and not self.vocabulary:
            raise InputError("the segment stage needs a vocabulary (--vocab)")
        if self.encoder is None and self.features is None:
            raise InputError("give an encoder to lift with (--encoder) or a folder of lifted features (--features)")
        if "lift" in self.stages and self.encoder is None:
            raise InputError("the lift stage needs an encoder (--encoder)")

    def resolved(self) -> RunConfig:
        """The same settings with local paths made absolute (student, features, and an encoder or text source
        whose part before any ``{`` exists here), so that workers with another working directory, on this or
        another node, read the same files; hub ids stay as they are."""
        def absolute(p: str | None) -> str | None:
            if not p or p.startswith("{") or os.path.isabs(p):
                return p
            head, brace, tail = p.partition("{")
            folder, prefix = os.path.split(head)
            if not os.path.exists(head if not brace else folder or "."):
                return p
            return os.path.join(os.path.abspath(folder or "."), prefix) + brace + tail if brace else os.path.abspath(p)
        enc = self.encoder
        if enc is not None:
            enc = dataclasses.replace(enc, source=absolute(enc.source), text_source=absolute(enc.text_source))
        return dataclasses.replace(self, encoder=enc, student=absolute(self.student), features=absolute(self.features))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings (of :meth:`resolved` settings, for a manifest); the student checkpoint is
        recorded with its size and SHA-256, so a changed checkpoint is another configuration."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["lift"], d["pooling"] = dataclasses.asdict(self.lift), dataclasses.asdict(self.pooling)
        del d["lift"]["batch_frames"]         # how many frames share a forward pass changes no result
        d["encoder"] = None if self.encoder is None else dataclasses.asdict(self.encoder)
        d["stages"] = list(self.stages)
        d["vocabulary"] = None if self.vocabulary is None else list(self.vocabulary)
        if self.student is not None:
            if not Path(self.student).is_file():
                raise InputError("student checkpoint not found", self.student)
            d["student"] = {"path": self.student, **file_digest(self.student)}
        return d
