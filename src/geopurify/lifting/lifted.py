"""Lifted features: the per-point result of lifting, what made it (:class:`FeatureSource`), its file format.

File format (``.npz``, written atomically): ``features (N, D) float32``, ``seen (N,) bool``,
``view_counts (N,) int32`` and ``meta``, a JSON string ``{"format_version": 1, "encoder": name,
"settings": {...}}`` where ``settings`` holds the lifting config (``lift``), the number of frames, the
encoder's ``source``, the ``vocabulary`` of consensus fusion and the ``text_encoder`` that embedded it.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._fileio import atomic_path
from .._validate import all_finite
from ..errors import InputError
from ..geometry import knn
from ..io.scene import Scene

FORMAT_VERSION = 1


@dataclass(frozen=True)
class FeatureSource:
    """What lifted features were made with; student checkpoints record it and inference checks it.

    Attributes:
        encoder: the image encoder's name (``"custom"``/``"unknown"`` when not known).
        dim: the feature size D.
        text_encoder: the text encoder that embedded the vocabulary, when known.
        vocabulary: the class names consensus fusion scored views against (None for mean fusion).
        fusion: ``"consensus"``, ``"mean"``, or None when not known (imported features).
    """

    encoder: str
    dim: int
    text_encoder: str | None = None
    vocabulary: tuple[str, ...] | None = None
    fusion: str | None = None

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"feature size must be positive, got {self.dim}")
        if self.vocabulary is not None:
            object.__setattr__(self, "vocabulary", tuple(self.vocabulary))

    @property
    def known_encoder(self) -> bool:
        return self.encoder not in ("custom", "unknown")

    def to_dict(self) -> dict[str, Any]:
        return {"encoder": self.encoder, "dim": self.dim, "text_encoder": self.text_encoder,
                "vocabulary": None if self.vocabulary is None else list(self.vocabulary), "fusion": self.fusion}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSource:
        return cls(**{k: d.get(k) for k in ("encoder", "dim", "text_encoder", "vocabulary", "fusion")})

    def check_matches(self, other: FeatureSource, what: str, path: str | os.PathLike[str] | None = None) -> None:
        """Raise :class:`InputError` when ``other`` (features given at inference) cannot be read by what
        was made from ``self``: another feature size, or another known encoder."""
        if other.dim != self.dim:
            raise InputError(f"{what} expects {self.dim}-d features from {self.encoder}, got {other.dim}-d features "
                             f"from {other.encoder}: lift with the encoder it was trained on", path)
        if self.known_encoder and other.known_encoder and other.encoder != self.encoder:
            raise InputError(f"{what} was trained on {self.encoder} features, got {other.encoder} features: "
                             f"lift with {self.encoder}", path)


@dataclass(frozen=True, eq=False)
class LiftedFeatures:
    """Per-point 2D features lifted onto a scene.

    Attributes:
        features: ``(N, D) float32``.
        seen: ``(N,) bool``: seen by at least one frame (others were filled from the nearest seen point,
            or are zero when filling is off).
        view_counts: ``(N,) int32`` number of frames that see each point.
        encoder: name of the encoder that produced the features.
        settings: JSON-serialisable description (lifting config, encoder options, vocabulary, ...).
    """

    features: torch.Tensor
    seen: torch.Tensor
    view_counts: torch.Tensor
    encoder: str
    settings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        f = self.features
        if not isinstance(f, torch.Tensor) or f.dim() != 2 or f.dtype != torch.float32:
            raise InputError(f"features must be an (N, D) float32 tensor, got {getattr(f, 'dtype', type(f))} "
                             f"{tuple(getattr(f, 'shape', ()))}")
        n = f.shape[0]
        if self.seen.shape != (n,) or self.seen.dtype != torch.bool:
            raise InputError(f"seen must be ({n},) bool")
        if self.view_counts.shape != (n,):
            raise InputError(f"view_counts must be ({n},)")
        if not all_finite(f):
            raise InputError("features contain NaN or inf")

    @property
    def num_points(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def source(self) -> FeatureSource:
        """What made these features (encoder, size, text encoder, vocabulary, fusion)."""
        s = self.settings
        vocab = s.get("vocabulary")
        return FeatureSource(self.encoder, self.dim, s.get("text_encoder"), None if vocab is None else tuple(vocab),
                             (s.get("lift") or {}).get("fusion"))

    def check_scene(self, scene: Scene, path: str | os.PathLike[str] | None = None) -> None:
        """Raise :class:`InputError` when these features were lifted for another point cloud (their recorded
        fingerprint differs from ``scene.fingerprint``; features without one are only checked by size)."""
        if self.num_points != scene.num_points:
            raise InputError(f"has features for {self.num_points} points but the scene has {scene.num_points} "
                             f"({scene.name})", path)
        fp = self.settings.get("fingerprint")
        if fp is not None and fp != scene.fingerprint:
            raise InputError(f"these features were lifted for scene {self.settings.get('scene')!r}, another point "
                             f"cloud than {scene.name!r} (same number of points, other coordinates)", path)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the ``.npz`` of the module docstring, atomically."""
        meta = {"format_version": FORMAT_VERSION, "encoder": self.encoder, "settings": self.settings}
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, features=self.features.numpy(), seen=self.seen.numpy(),
                         view_counts=self.view_counts.numpy().astype(np.int32), meta=np.array(json.dumps(meta)))

    @classmethod
    def load(cls, path: str | os.PathLike[str], num_points: int | None = None,
             scene: Scene | None = None) -> LiftedFeatures:
        """Read features written by :meth:`save`; ``num_points`` or ``scene`` (:meth:`check_scene`) checks
        them against a scene.

        Raises:
            InputError: missing or malformed file, or a point count other than ``num_points``.
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                out = cls(torch.from_numpy(z["features"].astype(np.float32)), torch.from_numpy(z["seen"]),
                          torch.from_numpy(z["view_counts"].astype(np.int32)), meta["encoder"], meta["settings"])
        except FileNotFoundError:
            raise InputError("file not found", path) from None
        except InputError as exc:
            raise exc.at(path) from None
        except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            raise InputError(f"not a lifted-features file ({type(exc).__name__}: {exc})", path) from None
        if num_points is not None and out.num_points != num_points:
            raise InputError(f"has features for {out.num_points} points but the scene has {num_points}", path)
        if scene is not None:
            out.check_scene(scene, path)
        return out


def fill_from_nearest(coords: torch.Tensor, features: torch.Tensor, seen: torch.Tensor,
                      inplace: bool = False) -> torch.Tensor:
    """Copy each unseen point's feature from its nearest seen point (KD-tree); ``inplace`` writes into
    ``features`` instead of a copy."""
    if bool(seen.all()) or not bool(seen.any()):
        return features
    seen_idx = torch.nonzero(seen).flatten()
    unseen_idx = torch.nonzero(~seen).flatten()
    _, nn = knn(coords[unseen_idx], coords[seen_idx], 1)
    out = features if inplace else features.clone()
    out[unseen_idx] = features[seen_idx[nn[:, 0]]]
    return out


