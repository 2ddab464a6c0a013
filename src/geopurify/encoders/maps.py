"""What a 2D encoder produces for one frame, and how points read it.

Two forms, both covering the colour image's field of view:

* :class:`DenseFeatures`: a ``(h, w, D)`` grid (per-pixel or per-patch), at any resolution;
* :class:`MaskFeatures`: a per-pixel owner map ``(h, w)`` (-1 = no mask) and one embedding per mask
  ``(K, D)``, as mask-based models (X-Decoder, APE, SAM + CLIP, ...) produce.

A colour pixel ``(row, col)`` of a ``W x H`` image reads the cell containing its centre:
``row' = floor((row + 0.5) h / H)``, ``col' = floor((col + 0.5) w / W)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._validate import as_tensor
from ..errors import InputError

GATHER_ROWS = 1024
"""Rows gathered from a feature map at a time: a 512-d chunk is 2 MiB, so it stays in cache and its
allocation is reused instead of being page-faulted in afresh (``benchmarks/README.md``, lifting)."""


def row_chunks(n: int) -> list[slice]:
    """Slices covering ``range(n)`` in pieces of at most :data:`GATHER_ROWS` (read at call time)."""
    return [slice(s, min(s + GATHER_ROWS, n)) for s in range(0, n, GATHER_ROWS)]


def _cells(pixels: torch.Tensor, image_size: tuple[int, int], grid_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    W, H = image_size
    h, w = grid_hw
    r = ((pixels[:, 0].to(torch.float64) + 0.5) * h / H).floor().long().clamp(0, h - 1)
    c = ((pixels[:, 1].to(torch.float64) + 0.5) * w / W).floor().long().clamp(0, w - 1)
    return r, c


@dataclass(frozen=True, eq=False)
class DenseFeatures:
    """A dense ``(h, w, D)`` float feature grid over the image."""

    features: torch.Tensor

    def __post_init__(self) -> None:
        f = self.features
        if not isinstance(f, torch.Tensor) or f.dim() != 3 or not f.dtype.is_floating_point or 0 in f.shape:
            raise InputError(f"dense features must be a non-empty float (h, w, D) tensor, got "
                             f"{getattr(f, 'dtype', type(f))} {tuple(getattr(f, 'shape', ()))}")

    @property
    def dim(self) -> int:
        return int(self.features.shape[2])

    def gather(self, pixels: torch.Tensor, image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Features at ``(M, 2)`` colour pixels ``(row, col)``: ``(M, D) float32`` and ``(M,)`` all-True."""
        h, w, d = self.features.shape
        r, c = _cells(pixels, image_size, (h, w))
        flat = self.features.reshape(h * w, d).index_select(0, r * w + c)
        return flat.to(torch.float32), torch.ones(len(r), dtype=torch.bool)

    def gather_logits(self, pixels: torch.Tensor, image_size: tuple[int, int], text: torch.Tensor,
                      scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``scale * normalize(f) . text`` at the pixels: ``(M, C)``, scored once per distinct cell."""
        h, w, d = self.features.shape
        r, c = _cells(pixels, image_size, (h, w))
        lin = r * w + c
        # distinct cells by marking a (h*w,) table: O(h*w + M), cheaper than sorting for unique()
        present = torch.zeros(h * w, dtype=torch.bool)
        present[lin] = True
        cells = torch.nonzero(present).flatten()
        slot = torch.empty(h * w, dtype=torch.int64)
        slot[cells] = torch.arange(len(cells))
        src = self.features.reshape(h * w, d)
        t = text.to(torch.float32).T.contiguous()
        logits = torch.empty(len(cells), t.shape[1])
        for part in row_chunks(len(cells)):
            f = src.index_select(0, cells[part]).to(torch.float32)
            block = torch.mm(f, t, out=logits[part])     # normalise the (rows, C) scores, not the (rows, D) features
            block *= scale / torch.linalg.vector_norm(f, dim=1, keepdim=True).clamp_min(1e-12)
        return logits.index_select(0, slot[lin]), torch.ones(len(r), dtype=torch.bool)

    @property
    def nbytes(self) -> int:
        return self.features.numel() * self.features.element_size()


@dataclass(frozen=True, eq=False)
class MaskFeatures:
    """Disjoint masks: ``owner (h, w) int64`` (-1 = no mask) and ``embeddings (K, D) float``."""

    owner: torch.Tensor
    embeddings: torch.Tensor

    def __post_init__(self) -> None:
        owner = as_tensor("mask owner map", self.owner, torch.int64, (None, None))
        emb = self.embeddings
        if not isinstance(emb, torch.Tensor) or emb.dim() != 2 or not emb.dtype.is_floating_point:
            raise ValueError("mask embeddings must be a float (K, D) tensor")
        if owner.numel() and (int(owner.max()) >= emb.shape[0] or int(owner.min()) < -1):
            raise ValueError(f"mask owner ids must lie in -1..{emb.shape[0] - 1}")
        object.__setattr__(self, "owner", owner)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def gather(self, pixels: torch.Tensor, image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding of the mask under each pixel; ``valid`` is False where no mask covers it."""
        r, c = _cells(pixels, image_size, tuple(self.owner.shape))
        ids = self.owner[r, c]
        valid = ids >= 0
        out = torch.zeros(len(ids), self.dim, dtype=torch.float32)
        out[valid] = self.embeddings[ids[valid]].to(torch.float32)
        return out, valid

    def gather_logits(self, pixels: torch.Tensor, image_size: tuple[int, int], text: torch.Tensor,
                      scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``scale * normalize(f) . text`` at the pixels: ``(M, C)``, scored once per mask."""
        r, c = _cells(pixels, image_size, tuple(self.owner.shape))
        ids = self.owner[r, c]
        valid = ids >= 0
        if self.embeddings.shape[0] == 0:                   # a view in which the model found nothing
            return torch.zeros(len(ids), text.shape[0]), valid
        mask_logits = scale * torch.nn.functional.normalize(self.embeddings.to(torch.float32), dim=1) @ text.T
        return mask_logits[ids.clamp_min(0)], valid

    @property
    def nbytes(self) -> int:
        return self.owner.numel() * 8 + self.embeddings.numel() * self.embeddings.element_size()


FrameFeatures = DenseFeatures | MaskFeatures


def assign_masks(probs: torch.Tensor, scores: torch.Tensor | None = None, threshold: float = 0.5) -> torch.Tensor:
    """Pixel-to-mask assignment as in the official pipeline.

    Each pixel goes to ``argmax_k score_k * prob_k`` and is kept only where that mask's own
    probability is at least ``threshold``.

    Args:
        probs: ``(K, h, w)`` mask probabilities in [0, 1] (bool masks are accepted).
        scores: ``(K,)`` mask confidence; default all ones.
    Returns:
        ``(h, w) int64`` owner map, -1 where no mask is kept.
    """
    p = probs.to(torch.float32)
    if p.dim() != 3:
        raise ValueError(f"mask probabilities must be (K, h, w), got {tuple(p.shape)}")
    if p.shape[0] == 0:
        return torch.full(p.shape[1:], -1, dtype=torch.int64)
    s = torch.ones(p.shape[0]) if scores is None else scores.to(torch.float32)
    best = (s[:, None, None] * p).argmax(0)
    own_prob = p.gather(0, best[None]).squeeze(0)
    return torch.where(own_prob >= threshold, best, torch.full_like(best, -1))
