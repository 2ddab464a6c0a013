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
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..io.frames import Frame
from .base import TextEncoder
from .maps import MaskFeatures, assign_masks


class MaskEncoder:
    """Reads ``<folder>/<frame name>.npz`` mask files.

    Args:
        source: the mask folder.
        text_encoder: embeds ``classes`` and the vocabulary, or a function that builds it the first time
            it is needed (``get_encoder("masks")`` passes one building ``minilm``); None: files must
            carry embeddings.
        threshold: minimum mask probability kept.
        logit_scale: scale for consensus fusion.
    """

    name = "masks"

    def __init__(self, source: str | os.PathLike[str],
                 text_encoder: TextEncoder | Callable[[], TextEncoder] | None = None,
                 threshold: float = 0.5, logit_scale: float = 50.0) -> None:
        self.source = str(source)
        self.folder = Path(source)
        if not self.folder.is_dir():
            raise InputError("mask folder not found", self.folder)
        self._text_encoder = text_encoder
        self.threshold = threshold
        self.logit_scale = logit_scale

    @property
    def text_encoder(self) -> TextEncoder | None:
        """The text encoder of the mask class names (built now if it was given as a function)."""
        te = self._text_encoder
        if te is not None and not isinstance(te, TextEncoder) and callable(te):
            self._text_encoder = te = te()
        return te  # type: ignore[return-value]

    @property
    def dim(self) -> int | None:
        """The text encoder's size once it exists (files with embeddings are checked per frame)."""
        te = self._text_encoder
        return int(te.dim) if te is not None and isinstance(te, TextEncoder) else None

    def encode_frame(self, frame: Frame) -> MaskFeatures:
        path = self.folder / f"{frame.name}.npz"
        masks, scores, emb, classes = read_mask_file(path, frame.name)
        k = masks.shape[0]
        if emb is None:
            if classes is None:
                raise InputError("needs 'embeddings' (K, D) or 'classes' (K,)", path)
            te = self.text_encoder
            if te is None:
                raise InputError("holds class names: pass a text encoder to embed them", path)
            emb = te.encode_text([te.template.format(c) for c in classes]) if k else torch.zeros(0, te.dim)
        if emb.dim() != 2 or emb.shape[0] != k:
            raise InputError(f"{k} masks but embeddings {tuple(emb.shape)}", path)
        owner = assign_masks(masks, scores, self.threshold)
        return MaskFeatures(owner, emb.to(torch.float32))


MaskFile = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, list[str] | None]


def read_mask_file(path: Path, frame_name: str, needs: str = "'masks' and 'embeddings' or 'classes'") -> MaskFile:
    """``(masks (K, h, w), scores (K,) or None, embeddings (K, D) or None, classes or None)`` of one mask file.

    Raises:
        InputError: missing or unreadable file, masks not ``(K, h, w)``, scores not ``(K,)``.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            masks = torch.from_numpy(np.asarray(z["masks"]))
            scores = torch.from_numpy(z["scores"]) if "scores" in z else None
            emb = torch.from_numpy(z["embeddings"]) if "embeddings" in z else None
            classes = [str(c) for c in z["classes"]] if "classes" in z else None
    except FileNotFoundError:
        raise InputError(f"no mask file for frame {frame_name!r}", path) from None
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"not a mask file with {needs} ({exc})", path) from None
    if masks.dim() != 3:
        raise InputError(f"masks must be (K, h, w), got {tuple(masks.shape)}", path)
    if scores is not None and scores.shape != (masks.shape[0],):
        raise InputError(f"{masks.shape[0]} masks but scores {tuple(scores.shape)}", path)
    return masks, scores, emb, classes
