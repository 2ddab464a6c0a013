"""What the Hugging Face ViT encoders share: loading a model folder, preprocessing a frame, the last attention.

Dense-feature rules for the last attention layer (``attention=`` of ``clip-hf`` and ``siglip``):

* ``"maskclip"`` (default; Zhou et al., *Extract Free Dense Labels from CLIP*, ECCV 2022): each token
  keeps its own value, ``out_proj(v_i)``; no query/key attention.
* ``"clearclip"`` (Lan et al., *ClearCLIP: Decomposing CLIP Representations for Dense Vision-Language
  Inference*, ECCV 2024, arXiv 2407.12442): self-self (query-query) attention,
  ``out_proj(sum_j softmax_j(q_i . q_j / sqrt(d)) v_j)`` per head, with the layer's residual connection
  and feed-forward network dropped (MaskCLIP drops them too).

ClearCLIP reports about twice MaskCLIP's dense zero-shot mIoU with real CLIP weights; nothing here was
measured with real weights (none are available offline), so the default stays MaskCLIP.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .._optional import require
from .._validate import check_source
from ..errors import InputError
from ..io.frames import Frame
from .maps import DenseFeatures

ATTENTION_RULES = ("maskclip", "clearclip")
DTYPES = {"auto": None, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def check_attention(rule: str) -> str:
    """``rule`` if it is one of :data:`ATTENTION_RULES`, else an :class:`InputError` listing them."""
    if rule not in ATTENTION_RULES:
        raise InputError(f"unknown attention rule {rule!r}; choose one of {', '.join(ATTENTION_RULES)}")
    return rule


def model_dtype(dtype: str, device: str) -> torch.dtype:
    """The weights' dtype: ``"auto"`` is float16 on CUDA and float32 elsewhere."""
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    chosen = DTYPES[dtype]
    return chosen if chosen is not None else (torch.float16 if str(device).startswith("cuda") else torch.float32)


def load_pretrained(class_names: tuple[str, ...], source: str | os.PathLike[str], what: str, extra: str,
                    feature: str, device: str = "cpu", dtype: str = "auto") -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a ``save_pretrained`` folder or hub id, in eval mode, frozen, on ``device``.

    The model class is the first of ``class_names`` (``transformers`` attribute names) that the config's
    ``model_type`` names, else the first one. Any failure to load is one :class:`InputError`.
    """
    check_source(source, f"{what} folder")
    weights = model_dtype(dtype, device)
    transformers = require("transformers", extra, feature=feature)
    try:
        cfg = transformers.AutoConfig.from_pretrained(str(source))
        chosen = next((c for c in class_names if c.lower() == cfg.model_type.replace("_", "") + "model"), class_names[0])
        model = getattr(transformers, chosen).from_pretrained(str(source))
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(source))
    except Exception as exc:  # noqa: BLE001 - unreadable, refused (pickled weights) or incomplete model folder
        raise InputError(f"cannot load a {what} ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})",
                         source) from None
    return model.eval().requires_grad_(False).to(device=device, dtype=weights), tokenizer


def image_stats(source: str | os.PathLike[str], mean: tuple[float, ...],
                std: tuple[float, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(image_mean, image_std)`` of the folder's ``preprocessor_config.json``, else the given defaults."""
    pre = Path(str(source)) / "preprocessor_config.json"
    if pre.is_file():
        cfg = json.loads(pre.read_text())
        mean, std = tuple(cfg.get("image_mean", mean)), tuple(cfg.get("image_std", std))
    return mean, std


def to_pixels(image: torch.Tensor, size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...],
              device: str, dtype: torch.dtype, mode: str = "bicubic") -> torch.Tensor:
    """``(H, W, 3) uint8`` (or ``(B, H, W, 3)``) -> ``(B, 3, h, w)`` normalised, resized to ``size`` (antialiased)."""
    x = (image[None] if image.dim() == 3 else image).permute(0, 3, 1, 2).to(torch.float32) / 255.0
    x = torch.nn.functional.interpolate(x, size=size, mode=mode, align_corners=False, antialias=True)
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    return ((x.clamp(0, 1) - m) / s).to(device=device, dtype=dtype)


def patch_size_for(hw: tuple[int, int], short_side: int, patch: int) -> tuple[int, int]:
    """Input size with short side ``short_side``, aspect kept, both sides rounded to multiples of ``patch``."""
    H, W = hw
    s = short_side / min(H, W)
    return max(patch, round(H * s / patch) * patch), max(patch, round(W * s / patch) * patch)


class PatchInput:
    """What a ViT encoder with ``model``, ``short_side``, ``patch``, ``mean``, ``std``, ``device`` and
    ``dense_features`` shares: its weights' ``dtype``, :meth:`preprocess` and the batched :meth:`encode_frames`."""

    model: Any
    short_side: int
    patch: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    device: str
    dense_features: Callable[[torch.Tensor], torch.Tensor]   # (B, 3, h, w) -> (B, h / patch, w / patch, D)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """``(H, W, 3) uint8`` -> ``(1, 3, h, w)`` normalised, short side ``short_side``, sides multiples of the patch."""
        size = patch_size_for(tuple(image.shape[:2]), self.short_side, self.patch)
        return to_pixels(image, size, self.mean, self.std, self.device, self.dtype)

    def encode_frame(self, frame: Frame) -> DenseFeatures:
        return DenseFeatures(self.dense_features(self.preprocess(frame.image))[0].float().cpu())

    def encode_frames(self, frames: list[Frame]) -> list[DenseFeatures]:
        """What :meth:`encode_frame` gives for each frame, in order, with one forward pass per input size:
        frames whose preprocessed ``(h, w)`` agree are stacked into one ``(B, 3, h, w)`` batch."""
        pixels = [self.preprocess(f.image) for f in frames]
        groups: dict[tuple[int, ...], list[int]] = {}
        for j, x in enumerate(pixels):
            groups.setdefault(tuple(x.shape[2:]), []).append(j)
        out: list[DenseFeatures | None] = [None] * len(frames)
        for members in groups.values():
            dense = self.dense_features(torch.cat([pixels[j] for j in members])).float().cpu()
            for j, d in zip(members, dense):
                out[j] = DenseFeatures(d.clone())       # its own storage: a cached frame keeps no batch alive
        return out  # type: ignore[return-value]


def mix_values(q: torch.Tensor, v: torch.Tensor, heads: int, rule: str) -> torch.Tensor:
    """The last attention's mixing of values, before the output projection (module docstring).

    Args:
        q, v: ``(B, N, E)`` projected queries and values of all tokens.
        heads: number of attention heads (``E / heads`` channels each).
    Returns:
        ``(B, N, E)``: ``v`` itself for ``maskclip``; query-query attention over ``v`` for ``clearclip``.
    """
    if rule == "maskclip":
        return v
    B, N, E = v.shape
    qh = q.view(B, N, heads, E // heads).transpose(1, 2)
    vh = v.view(B, N, heads, E // heads).transpose(1, 2)
    att = torch.softmax((qh @ qh.transpose(2, 3)).float() * (E // heads) ** -0.5, dim=-1).to(v.dtype)
    return (att @ vh).transpose(1, 2).reshape(B, N, E)
