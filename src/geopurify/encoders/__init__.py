"""2D image encoders and text encoders: one Protocol each, a registry of factories, entry points.

An :class:`ImageEncoder` turns a :class:`~geopurify.frames.Frame` into
:data:`~geopurify.features.FrameFeatures`; a :class:`TextEncoder` embeds class names or free text in
the same space. Built-ins:

=================  ===========================================================================
``clip-hf``        a CLIP-family model in Hugging Face format (local folder), dense MaskCLIP
                   features; its text tower embeds the vocabulary  (extra ``clip``)
``precomputed``    per-frame feature maps from files (LSeg, OpenSeg, X-Decoder... run elsewhere)
``masks``          per-frame masks with an embedding, or a class name embedded by a text encoder
=================  ===========================================================================

Text encoders: ``minilm`` (the offline MiniLM sentence encoder, extra ``minilm``) and
``clip-hf``'s own. Third-party packages add encoders through the entry-point groups
``geopurify.encoders`` and ``geopurify.text_encoders`` (a factory taking keyword options).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch

from .._plugins import build_plugin
from ..features import FrameFeatures
from ..frames import Frame

DEFAULT_TEMPLATE = "a {} in a scene"


@runtime_checkable
class ImageEncoder(Protocol):
    """Turns frames into features. ``name``: registry name; ``dim``: feature size (None until known)."""

    name: str
    logit_scale: float

    def encode_frame(self, frame: Frame) -> FrameFeatures: ...


@runtime_checkable
class TextEncoder(Protocol):
    """Embeds texts: ``encode_text(texts) -> (len(texts), D)`` L2-normalised float32."""

    name: str

    def encode_text(self, texts: list[str]) -> torch.Tensor: ...


def _clip_hf(**kw: Any) -> Any:
    """ClipHFEncoder is both an ImageEncoder and a TextEncoder (its text tower)."""
    from .clip_hf import ClipHFEncoder
    return ClipHFEncoder(**kw)


def _precomputed(**kw: Any) -> ImageEncoder:
    from .precomputed import PrecomputedEncoder
    return PrecomputedEncoder(**kw)


def _masks(**kw: Any) -> ImageEncoder:
    from .masks import MaskEncoder
    return MaskEncoder(**kw)


def _minilm(**kw: Any) -> TextEncoder:
    from .text import MiniLMTextEncoder
    return MiniLMTextEncoder(**kw)


ENCODERS: dict[str, Callable[..., ImageEncoder]] = {"clip-hf": _clip_hf, "precomputed": _precomputed, "masks": _masks}
TEXT_ENCODERS: dict[str, Callable[..., TextEncoder]] = {"minilm": _minilm, "clip-hf": _clip_hf}


def get_encoder(name: str, **options: Any) -> ImageEncoder:
    """Build an image encoder by name (built-in or entry point); ``KeyError`` lists the names."""
    return build_plugin("encoder", "geopurify.encoders", ENCODERS, name, **options)


def get_text_encoder(name: str, **options: Any) -> TextEncoder:
    """Build a text encoder by name (built-in or entry point); ``KeyError`` lists the names."""
    return build_plugin("text encoder", "geopurify.text_encoders", TEXT_ENCODERS, name, **options)


def prompts(class_names: list[str], template: str = DEFAULT_TEMPLATE) -> list[str]:
    """``template.format(name)`` for each class name (default ``"a {} in a scene"``)."""
    return [template.format(c) for c in class_names]


def encode_vocabulary(text_encoder: TextEncoder, names: list[str], template: str | None = DEFAULT_TEMPLATE) -> torch.Tensor:
    """Embed class names or free texts, ``(len(names), D)`` unit rows, the way the features were made.

    CLIP-family text towers read prompts (``template``, default ``"a {} in a scene"``, as upstream);
    sentence encoders such as ``minilm`` embed mask class names as they are, so their names are not
    templated. ``template=None`` never templates.
    """
    use = template is not None and getattr(text_encoder, "name", "") == "clip-hf"
    emb = text_encoder.encode_text(prompts(names, template) if use else list(names))  # type: ignore[arg-type]
    return torch.nn.functional.normalize(emb.float(), dim=1)


__all__ = ["ImageEncoder", "TextEncoder", "ENCODERS", "TEXT_ENCODERS", "get_encoder", "get_text_encoder",
           "prompts", "encode_vocabulary", "DEFAULT_TEMPLATE"]
