"""Per-frame masks, as mask-based 2D models produce (X-Decoder, APE, SAM + a classifier, ...).

One ``<frame>.npz`` per frame in a folder, with

* ``masks``: ``(K, h, w)`` mask probabilities in [0, 1] (or bool), at any resolution covering the
  colour image's field of view;
* ``scores``: optional ``(K,)`` confidences (default 1);
* either ``embeddings``: ``(K, D)`` one embedding per mask (X-Decoder's ``mask_embed``), or
  ``classes``: ``(K,)`` class names, embedded with a text encoder (e.g. ``minilm``).

Pixels go to ``argmax_k score_k * mask_k`` where that mask's probability is >= 0.5 (as upstream);
pixels no mask keeps are unobserved in that view.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..features import MaskFeatures, assign_masks
from ..frames import Frame
from . import TextEncoder


class MaskEncoder:
    """Reads ``<folder>/<frame name>.npz`` mask files.

    Args:
        folder: the mask folder.
        text_encoder: embeds ``classes`` (needed when files carry names instead of embeddings).
        threshold: minimum mask probability kept.
        logit_scale: scale for consensus fusion.
    """

    name = "masks"

    def __init__(self, folder: str | os.PathLike[str], text_encoder: TextEncoder | None = None,
                 threshold: float = 0.5, logit_scale: float = 50.0, template: str = "{}") -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputError("mask folder not found", self.folder)
        self.text_encoder = text_encoder
        self.threshold = threshold
        self.logit_scale = logit_scale
        self.template = template

    def encode_frame(self, frame: Frame) -> MaskFeatures:
        path = self.folder / f"{frame.name}.npz"
        try:
            with np.load(path, allow_pickle=False) as z:
                masks = torch.from_numpy(np.asarray(z["masks"]))
                scores = torch.from_numpy(z["scores"]) if "scores" in z else None
                emb = torch.from_numpy(z["embeddings"]) if "embeddings" in z else None
                classes = [str(c) for c in z["classes"]] if "classes" in z else None
        except FileNotFoundError:
            raise InputError(f"no mask file for frame {frame.name!r}", path) from None
        except (KeyError, ValueError, OSError) as exc:
            raise InputError(f"not a mask file with 'masks' and 'embeddings' or 'classes' ({exc})", path) from None
        if masks.dim() != 3:
            raise InputError(f"masks must be (K, h, w), got {tuple(masks.shape)}", path)
        k = masks.shape[0]
        if emb is None:
            if classes is None:
                raise InputError("needs 'embeddings' (K, D) or 'classes' (K,)", path)
            if self.text_encoder is None:
                raise InputError("holds class names: pass a text encoder to embed them", path)
            emb = self.text_encoder.encode_text([self.template.format(c) for c in classes]) if k else torch.zeros(0, 1)
        if emb.dim() != 2 or emb.shape[0] != k or (scores is not None and scores.shape != (k,)):
            raise InputError(f"{k} masks but embeddings {tuple(emb.shape)} / scores "
                             f"{None if scores is None else tuple(scores.shape)}", path)
        owner = assign_masks(masks, scores, self.threshold)
        return MaskFeatures(owner, emb.to(torch.float32))
