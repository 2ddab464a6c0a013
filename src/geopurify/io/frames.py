"""The image side of a scan: posed colour(-depth) frames, loaded lazily one at a time.

Camera conventions are in :mod:`geopurify.camera`. A :class:`Frames` sequence holds only metadata
(paths, intrinsics, poses); indexing it reads the images of one frame, so that lifting streams over
hundreds of frames with one frame in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._validate import as_tensor
from ..camera import check_intrinsics, check_pose, scale_intrinsics
from ..errors import InputError
from .images import read_color, read_depth

ASPECT_TOLERANCE = 0.02


@dataclass(frozen=True, eq=False)
class Frame:
    """One posed RGB(-D) view.

    Attributes:
        name: frame identifier (e.g. the file stem).
        image: ``(H, W, 3) uint8`` RGB.
        intrinsics: ``(3, 3) float64`` pinhole matrix of ``image`` at its own resolution.
        cam_to_world: ``(4, 4) float64`` rigid pose, camera -> world (OpenCV axes).
        depth: optional ``(h, w) float32`` z-depth in metres, 0 = invalid. It may have another
            resolution than ``image`` (ScanNet: 640x480 depth, 1296x968 colour) but the same field of
            view, i.e. the same aspect ratio within 2%.
        depth_intrinsics: ``(3, 3)`` intrinsics of ``depth``; default: ``intrinsics`` scaled to it.
    """

    name: str
    image: torch.Tensor
    intrinsics: np.ndarray
    cam_to_world: np.ndarray
    depth: torch.Tensor | None = None
    depth_intrinsics: np.ndarray | None = None

    def __post_init__(self) -> None:
        image = as_tensor("image", self.image, torch.uint8, (None, None, 3))
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "intrinsics", check_intrinsics(self.intrinsics))
        object.__setattr__(self, "cam_to_world", check_pose(self.cam_to_world))
        if self.depth is not None:
            depth = as_tensor("depth", self.depth, torch.float32, (None, None), finite=False)
            depth = torch.where(torch.isfinite(depth) & (depth > 0), depth, torch.zeros_like(depth))
            h, w = depth.shape
            H, W = image.shape[:2]
            if abs((w / h) / (W / H) - 1) > ASPECT_TOLERANCE:
                raise InputError(f"depth is {w}x{h} but the colour image is {W}x{H}: the aspect ratios "
                                 "differ, so depth does not cover the same view")
            object.__setattr__(self, "depth", depth)
            K_d = (scale_intrinsics(self.intrinsics, (W, H), (w, h)) if self.depth_intrinsics is None
                   else check_intrinsics(self.depth_intrinsics, "depth intrinsics"))
            object.__setattr__(self, "depth_intrinsics", K_d)
        elif self.depth_intrinsics is not None:
            raise InputError("depth_intrinsics given without depth")

    @property
    def size(self) -> tuple[int, int]:
        """Colour image ``(W, H)``."""
        return int(self.image.shape[1]), int(self.image.shape[0])


@dataclass(frozen=True)
class FrameSpec:
    """Where one frame's files are and how to read them (no pixels are held).

    Attributes:
        name: frame identifier.
        color_path: colour image file.
        intrinsics: ``(3, 3)`` intrinsics at the colour file's native resolution.
        cam_to_world: ``(4, 4)`` pose.
        depth_path: optional 16-bit depth PNG.
        depth_scale: raw depth units per metre.
        depth_invalid: raw depth values meaning "no measurement".
        depth_intrinsics: intrinsics of the depth file; default: colour intrinsics scaled.
        image_size: optional ``(W, H)`` to resize colour to on load (intrinsics follow).
        intrinsics_size: ``(W, H)`` that ``intrinsics`` refer to when that is not the colour file's size
            (nerfstudio ``w h`` with downscaled images, Stray Scanner's video size): scaled to the file's on load.
    """

    name: str
    color_path: Path
    intrinsics: np.ndarray = field(repr=False)
    cam_to_world: np.ndarray = field(repr=False)
    depth_path: Path | None = None
    depth_scale: float = 1000.0
    depth_invalid: tuple[int, ...] = (0,)
    depth_intrinsics: np.ndarray | None = field(default=None, repr=False)
    image_size: tuple[int, int] | None = None
    intrinsics_size: tuple[int, int] | None = None

    def load(self) -> Frame:
        """Read the images and build a validated :class:`Frame`.

        Raises:
            InputError: naming the file that is missing, unreadable or inconsistent.
        """
        image = read_color(self.color_path)
        K = self.intrinsics
        native = (image.shape[1], image.shape[0])
        if self.intrinsics_size is not None and tuple(self.intrinsics_size) != native:
            K = scale_intrinsics(K, self.intrinsics_size, native)
        if self.image_size is not None and tuple(self.image_size) != native:
            K = scale_intrinsics(K, native, self.image_size)
            image = read_color(self.color_path, self.image_size)
        depth = None
        if self.depth_path is not None:
            depth = read_depth(self.depth_path, self.depth_scale, self.depth_invalid)
        try:
            return Frame(self.name, image, K, self.cam_to_world, depth, self.depth_intrinsics)
        except InputError as exc:
            raise exc.at(self.depth_path if "depth" in exc.problem and self.depth_path else self.color_path) \
                from None


class Frames(Sequence[Frame]):
    """A sequence of frames; ``frames[i]`` loads frame ``i`` (from files or memory).

    Build with :meth:`from_specs` (lazy, file-backed) or :meth:`from_frames` (in memory).
    Poses and intrinsics are available without reading any image (:attr:`poses`).
    """

    def __init__(self, items: Sequence[FrameSpec | Frame]) -> None:
        self._items = tuple(items)

    @classmethod
    def from_specs(cls, specs: Sequence[FrameSpec]) -> Frames:
        return cls(specs)

    @classmethod
    def from_frames(cls, frames: Sequence[Frame]) -> Frames:
        return cls(frames)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> Frame:  # type: ignore[override]
        item = self._items[i]
        return item.load() if isinstance(item, FrameSpec) else item

    def __iter__(self) -> Iterator[Frame]:
        for i in range(len(self)):
            yield self[i]

    @property
    def names(self) -> list[str]:
        return [it.name for it in self._items]

    @property
    def poses(self) -> torch.Tensor:
        """``(F, 4, 4) float64`` cam_to_world of every frame, without reading images."""
        return torch.from_numpy(np.stack([np.asarray(it.cam_to_world) for it in self._items])) \
            if self._items else torch.zeros(0, 4, 4, dtype=torch.float64)

    @property
    def has_depth(self) -> bool:
        return any((it.depth_path if isinstance(it, FrameSpec) else it.depth) is not None for it in self._items)

    def subsample(self, step: int) -> Frames:
        """Every ``step``-th frame."""
        if step < 1:
            raise ValueError(f"frame step must be >= 1, got {step}")
        return Frames(self._items[::step])

    def __repr__(self) -> str:
        return f"Frames({len(self)} frames)"
