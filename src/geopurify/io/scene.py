"""The point-cloud side of a scan: :class:`Scene`.

A scene is what every later stage consumes: lifting projects its ``coords`` into frames, the
student voxelises ``coords`` and reads ``colors``/``normals``, evaluation compares predictions with
``labels``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from functools import cached_property

import torch

from .._fileio import safe_name
from .._validate import as_tensor
from ..errors import InputError
from ..labels import LabelSet

MAX_EXTENT = 10_000.0
"""The largest extent of a scan in metres (its voxel grid must fit Morton codes at 2 cm)."""


@dataclass(frozen=True, eq=False)
class Scene:
    """A labelled or unlabelled point cloud.

    Attributes:
        name: scene identifier, e.g. ``"scene0000_00"``; made one safe path component
            (:func:`geopurify._fileio.safe_name`: letters, digits, ``._-``), since outputs are named after it.
        coords: ``(N, 3) float32`` world coordinates in metres (z up for ScanNet-style data).
        colors: ``(N, 3) float32`` sRGB colour in ``[0, 1]``.
        normals: ``(N, 3) float32`` unit normals (estimated by the readers when a source has none).
        labels: optional ``(N,) int64`` class indices into ``label_set.class_names``, with
            ``label_set.ignore_index`` (-1) for unannotated points.
        label_set: the :class:`~geopurify.labels.LabelSet` of ``labels`` (required with labels).
        instances: optional ``(N,) int64`` instance ids, ``-1`` = no instance.

    Raises:
        InputError: on a wrong shape or dtype, non-finite values, colours outside [0, 1],
            non-unit normals, an empty scene, or labels outside the label set.
    """

    name: str
    coords: torch.Tensor
    colors: torch.Tensor
    normals: torch.Tensor
    labels: torch.Tensor | None = None
    label_set: LabelSet | None = None
    instances: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError("scene name must be a non-empty string")
        object.__setattr__(self, "name", safe_name(self.name))
        coords = as_tensor("coords", self.coords, torch.float32, (None, 3))
        n = coords.shape[0]
        if n == 0:
            raise InputError("scene has no points")
        object.__setattr__(self, "coords", coords)
        extent = float((coords.max(0).values - coords.min(0).values).max())
        if extent > MAX_EXTENT:
            raise InputError(f"points span {extent:.3g} m; a scan is at most {MAX_EXTENT:g} m across (a stray point, "
                             "or coordinates not in metres?)")
        colors = as_tensor("colors", self.colors, torch.float32, (n, 3))
        if bool((colors < 0).any() | (colors > 1).any()):
            raise InputError("colors must lie in [0, 1] (sRGB); divide 8-bit colours by 255")
        object.__setattr__(self, "colors", colors)
        normals = as_tensor("normals", self.normals, torch.float32, (n, 3))
        norm = normals.norm(dim=1)
        if bool(((norm - 1).abs() > 1e-2).any()):
            raise InputError(f"normals must be unit vectors; {int(((norm - 1).abs() > 1e-2).sum())} are not")
        object.__setattr__(self, "normals", normals)
        if self.labels is not None:
            labels = as_tensor("labels", self.labels, torch.int64, (n,))
            if self.label_set is None:
                raise InputError("labels need a label_set")
            bad = (labels >= self.label_set.num_classes) | ((labels < 0) & (labels != self.label_set.ignore_index))
            if bool(bad.any()):
                raise InputError(f"{int(bad.sum())} labels are outside label set {self.label_set.name!r} "
                                 f"(0..{self.label_set.num_classes - 1} or {self.label_set.ignore_index}), "
                                 f"e.g. {labels[bad][:5].tolist()}")
            object.__setattr__(self, "labels", labels)
        if self.instances is not None:
            instances = as_tensor("instances", self.instances, torch.int64, (n,))
            if bool((instances < -1).any()):
                raise InputError("instance ids must be >= -1 (-1 = no instance)")
            object.__setattr__(self, "instances", instances)

    @cached_property
    def fingerprint(self) -> str:
        """16 hex digits of the SHA-1 of the float32 coordinates: tells point clouds of equal size apart."""
        return hashlib.sha1(self.coords.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]

    @property
    def num_points(self) -> int:
        return int(self.coords.shape[0])

    @property
    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``((3,), (3,))`` axis-aligned bounding box minimum and maximum, metres."""
        return self.coords.min(0).values, self.coords.max(0).values

    def to(self, device: torch.device | str) -> Scene:
        """A copy with every tensor on ``device``."""
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)
        return replace(self, coords=move(self.coords), colors=move(self.colors), normals=move(self.normals),
                       labels=move(self.labels), instances=move(self.instances))

    def select(self, index: torch.Tensor) -> Scene:
        """The sub-scene of the points picked by a ``(N,)`` bool mask or a LongTensor of indices."""
        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[index]
        return replace(self, coords=pick(self.coords), colors=pick(self.colors), normals=pick(self.normals),
                       labels=pick(self.labels), instances=pick(self.instances))

    def to_point_dict(self) -> dict[str, torch.Tensor]:
        """Pointcept/Sonata-style keys: ``coord``, ``color`` (0..255 float), ``normal``, ``segment``."""
        out = {"coord": self.coords, "color": self.colors * 255.0, "normal": self.normals}
        if self.labels is not None:
            out["segment"] = self.labels
        if self.instances is not None:
            out["instance"] = self.instances
        return out
