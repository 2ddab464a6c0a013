"""Class-agnostic mask proposals embedded by a CLIP-family image tower (``mask-embed``).

Per frame, masks come from files (the ``masks`` encoder's ``<frame>.npz`` with ``masks`` and optional
``scores``) or from a SAM checkpoint through ``transformers``' mask-generation pipeline. Each mask is
embedded as OpenMask3D does (Takmaz et al., NeurIPS 2023, ``mask2box_multi_level``): ``L`` crops around
the mask, level ``l`` its bounding box grown by ``l * expansion`` of the box's width and height on each
side (clipped to the image); each crop is resized to the tower's square input size, embedded by the
image tower (``embed_images``: CLIP's projected class token, SigLIP's pooling head), the ``L``
L2-normalised embeddings averaged and normalised again. Defaults are OpenMask3D's: ``L = 3``,
``expansion = 0.1``, background kept; ``background="mask"`` paints pixels outside the mask with the
tower's mean colour (zero after normalisation). Two small departures: boxes include their last row and
column, and crops are resized to the square (SigLIP's processor does; CLIP's would centre-crop).

Pixels go to masks as in the ``masks`` encoder (``argmax_k score_k * mask_k`` where that mask's
probability is >= ``threshold``); the embeddings live in the tower's text space, so free-text queries
work at query time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .._optional import require
from .._validate import check_source
from ..errors import InputError
from ..io.frames import Frame
from ._hf import to_pixels
from .maps import MaskFeatures, assign_masks
from .masks import read_mask_file

BACKGROUNDS = ("keep", "mask")
Proposals = Callable[[Frame], tuple[torch.Tensor, torch.Tensor | None]]


def mask_boxes(masks: torch.Tensor, level: int, expansion: float) -> torch.Tensor:
    """OpenMask3D's multi-level boxes: ``(K, H, W) bool`` -> ``(K, 4) int64`` ``(top, left, bottom, right)``,
    bottom/right exclusive; an empty mask gets the whole image."""
    K, H, W = masks.shape
    rows, cols = masks.any(2), masks.any(1)
    ar_h, ar_w = torch.arange(H), torch.arange(W)
    top = torch.where(rows, ar_h, H).amin(1)
    bottom = torch.where(rows, ar_h, -1).amax(1) + 1
    left = torch.where(cols, ar_w, W).amin(1)
    right = torch.where(cols, ar_w, -1).amax(1) + 1
    empty = ~rows.any(1)
    top, left = torch.where(empty, 0, top), torch.where(empty, 0, left)
    bottom, right = torch.where(empty, H, bottom), torch.where(empty, W, right)
    dy = ((bottom - top).double() * expansion).long() * level      # int(height * ratio) * level, as upstream
    dx = ((right - left).double() * expansion).long() * level
    return torch.stack([(top - dy).clamp_min(0), (left - dx).clamp_min(0),
                        (bottom + dy).clamp_max(H), (right + dx).clamp_max(W)], 1)


def masks_at(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(K, h, w)`` masks read at every pixel of an ``(H, W)`` image by the cell containing its centre."""
    H, W = size
    h, w = masks.shape[1:]
    r = ((torch.arange(H, dtype=torch.float64) + 0.5) * h / H).floor().long().clamp(0, h - 1)
    c = ((torch.arange(W, dtype=torch.float64) + 0.5) * w / W).floor().long().clamp(0, w - 1)
    return masks[:, r][:, :, c]


class FileProposals:
    """Masks (and scores) from ``<folder>/<frame>.npz`` files (the ``masks`` encoder's format, embeddings not needed)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputError("mask folder not found", self.folder)

    def __call__(self, frame: Frame) -> tuple[torch.Tensor, torch.Tensor | None]:
        masks, scores, _, _ = read_mask_file(self.folder / f"{frame.name}.npz", frame.name, needs="'masks'")
        return masks, scores


class SamProposals:
    """Automatic masks of a SAM-family checkpoint (``transformers`` pipeline ``mask-generation``; it needs
    ``torchvision`` for its non-maximum suppression)."""

    def __init__(self, source: str | os.PathLike[str], device: str = "cpu", points_per_batch: int = 64,
                 **options: object) -> None:
        check_source(source, "SAM model folder")
        require("torchvision", "sam3", feature="SAM mask proposals (torch==2.14.1 with torchvision==0.29.1)")
        transformers = require("transformers", "sam3", feature="SAM mask proposals")
        try:
            self.pipe = transformers.pipeline("mask-generation", model=str(source), device=device)
        except Exception as exc:  # noqa: BLE001 - unreadable or incomplete model folder
            raise InputError(f"cannot load a SAM model ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})",
                             source) from None
        self.options = {"points_per_batch": points_per_batch, **options}

    def __call__(self, frame: Frame) -> tuple[torch.Tensor, torch.Tensor | None]:
        from PIL import Image

        out = self.pipe(Image.fromarray(frame.image.numpy()), **self.options)
        masks = [torch.as_tensor(np.asarray(m)) for m in out["masks"]]
        H, W = frame.image.shape[:2]
        stacked = torch.stack(masks).bool() if masks else torch.zeros(0, H, W, dtype=torch.bool)
        return stacked, torch.as_tensor(out["scores"]).float().reshape(-1)


class MaskEmbedEncoder:
    """Mask proposals embedded by an image tower (module docstring).

    Args:
        tower: an encoder with ``embed_images``, ``mean``, ``std``, ``image_size``, ``device`` and ``dtype``
            (``clip-hf``, ``siglip``); its text tower embeds the vocabulary and queries.
        proposals: a function ``frame -> (masks (K, h, w), scores (K,) or None)``.
        levels, expansion: OpenMask3D's crop levels and growth per level.
        background: ``keep`` (OpenMask3D) or ``mask`` (outside the mask painted with the mean colour).
        threshold: minimum mask probability a pixel keeps.
        batch: crops embedded at a time.
    """

    name = "mask-embed"

    def __init__(self, tower: object, proposals: Proposals, levels: int = 3, expansion: float = 0.1,
                 background: str = "keep", threshold: float = 0.5, batch: int = 64) -> None:
        if background not in BACKGROUNDS:
            raise InputError(f"unknown background {background!r}; choose one of {', '.join(BACKGROUNDS)}")
        if levels < 1 or not 0 <= expansion <= 10 or batch < 1:
            raise InputError(f"levels and batch must be >= 1 and expansion in [0, 10], got {levels}, {batch}, {expansion}")
        if not callable(getattr(tower, "embed_images", None)):
            raise InputError(f"the {getattr(tower, 'name', type(tower).__name__)} encoder has no image tower "
                             "(embed_images) to embed masks with; use clip-hf or siglip")
        self.tower, self.proposals = tower, proposals
        self.levels, self.expansion, self.background = levels, expansion, background
        self.threshold, self.batch = threshold, batch
        self.source = getattr(tower, "source", None)
        self.dim = tower.dim
        self.logit_scale = tower.logit_scale
        self.text_encoder = getattr(tower, "text_encoder", tower)

    def crops(self, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``(H, W, 3) uint8`` image and ``(K, H, W) bool`` masks -> ``(K, L, 3, s, s)`` normalised tower inputs."""
        t = self.tower
        fill = torch.tensor([round(m * 255) for m in t.mean], dtype=torch.uint8)
        out = torch.empty(masks.shape[0], self.levels, 3, t.image_size, t.image_size, dtype=t.dtype, device=t.device)
        for level in range(self.levels):
            for k, (y0, x0, y1, x1) in enumerate(mask_boxes(masks, level, self.expansion).tolist()):
                crop = image[y0:y1, x0:x1]
                if self.background == "mask":
                    crop = torch.where(masks[k, y0:y1, x0:x1, None], crop, fill)
                out[k, level] = to_pixels(crop, (t.image_size, t.image_size), t.mean, t.std, t.device, t.dtype)[0]
        return out

    def embed_masks(self, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``(K, D)`` unit embeddings of ``(K, H, W) bool`` masks on an ``(H, W, 3) uint8`` image."""
        K = masks.shape[0]
        if K == 0:
            return torch.zeros(0, self.dim)
        flat = self.crops(image, masks).flatten(0, 1)
        emb = torch.cat([self.tower.embed_images(flat[i:i + self.batch]) for i in range(0, len(flat), self.batch)])
        mean = emb.float().cpu().reshape(K, self.levels, -1).mean(1)
        return torch.nn.functional.normalize(mean, dim=1)

    def encode_frame(self, frame: Frame) -> MaskFeatures:
        """Masks that own no pixel are not embedded (their rows are zero)."""
        masks, scores = self.proposals(frame)
        if masks.dim() != 3:
            raise InputError(f"frame {frame.name!r}: masks must be (K, h, w), got {tuple(masks.shape)}")
        probs = masks.to(torch.float32)
        owner = assign_masks(probs, scores, self.threshold)
        used = torch.unique(owner[owner >= 0])
        emb = torch.zeros(masks.shape[0], self.dim)
        if len(used):
            keep = masks_at(probs[used] >= self.threshold, tuple(frame.image.shape[:2]))
            emb[used] = self.embed_masks(frame.image, keep)
        return MaskFeatures(owner, emb)
