"""2D features: image encoders and text encoders, one Protocol each, a registry of factories, entry points.

An :class:`ImageEncoder` turns a :class:`~geopurify.io.Frame` into a feature map
(:mod:`geopurify.encoders.maps`); a :class:`TextEncoder` embeds class names or free text in the same
space. Both describe themselves (``name``, ``dim``), so nothing downstream switches on their names.
Built-ins, each built from one ``source=`` (a folder, a file pattern or a hub id):

=================  ===========================================================================
``clip-hf``        a CLIP-family model in Hugging Face format (``source``: folder or hub id), dense
                   MaskCLIP features; its own text tower embeds the vocabulary  (extra ``clip``)
``siglip``         a SigLIP / SigLIP 2 model in Hugging Face format (``source``: folder or hub id),
                   dense features through its attention-pooling head; its own text tower  (extra ``siglip``)
``mask-embed``     class-agnostic masks (``masks=`` folder, or ``sam=`` a SAM checkpoint) embedded by the
                   image tower of ``tower=`` (``clip-hf`` or ``siglip``, built from ``source``) over
                   OpenMask3D's multi-scale crops; text space of that tower  (extra of the tower)
``sam3``           SAM 3 in Hugging Face format (``source``: folder or hub id), one text prompt per class:
                   per-pixel class scores ``(h, w, C)`` (class-score space; its own "text encoder"
                   embeds vocabulary names as one-hot rows)  (extra ``sam3``, needs torchvision)
``precomputed``    per-frame feature maps from files (``source``: folder, or a pattern with
                   ``{frame}``), from LSeg, OpenSeg, X-Decoder... run elsewhere
``masks``          per-frame masks (``source``: folder) with an embedding, or a class name that a
                   text encoder embeds (default ``minilm``)
=================  ===========================================================================

Text encoders: ``minilm`` (the offline MiniLM sentence encoder, extra ``minilm``; ``source``: a
sentence-transformers folder, default the packaged one), ``clip-hf`` and ``siglip`` (the text towers alone).

Factories are called as ``factory(source=..., **options)``; an image-encoder factory also accepts
``text_encoder=`` (a :class:`TextEncoder` whose space its features share) when it needs one. Third-party
packages add encoders through the entry-point groups ``geopurify.encoders`` and
``geopurify.text_encoders``; they are looked up exactly like the built-ins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .._plugins import Registry
from .._validate import check_source
from ..errors import InputError
from .base import ImageEncoder, TextEncoder
from .clip_hf import ClipHFEncoder
from .mask_embed import FileProposals, MaskEmbedEncoder, SamProposals
from .masks import MaskEncoder
from .precomputed import PrecomputedEncoder
from .sam3 import Sam3Encoder
from .siglip import SiglipEncoder
from .text import MiniLMTextEncoder


def _masks(source: str, text_encoder: TextEncoder | None = None, threshold: float = 0.5,
           logit_scale: float = 50.0) -> MaskEncoder:
    """The ``masks`` encoder; its class names are embedded by ``minilm`` unless ``text_encoder`` is given
    (built only when a file holds class names or a vocabulary is embedded)."""
    return MaskEncoder(source, text_encoder if text_encoder is not None else lambda: get_text_encoder("minilm"),
                       threshold, logit_scale)


def _mask_embed(source: str, tower: str = "clip-hf", masks: str | None = None, sam: str | None = None,
                device: str = "cpu", levels: int = 3, expansion: float = 0.1, background: str = "keep",
                threshold: float = 0.5, batch: int = 64, **tower_options: Any) -> MaskEmbedEncoder:
    """The ``mask-embed`` encoder: proposals from ``masks=`` (folder) or ``sam=`` (SAM folder or hub id),
    embedded by the ``tower`` encoder built from ``source`` (its other options go to the tower)."""
    if (masks is None) == (sam is None):
        raise InputError("mask-embed takes its masks from masks=FOLDER or sam=SAM_MODEL (exactly one)")
    check_source(source, "image tower folder")
    proposals = FileProposals(masks) if masks is not None else SamProposals(sam, device=device)
    return MaskEmbedEncoder(get_encoder(tower, source=source, device=device, **tower_options), proposals,
                            levels, expansion, background, threshold, batch)


# the built-ins import their heavy dependencies (transformers, sentence-transformers) only when built
ENCODERS: Registry[Callable[..., ImageEncoder]] = Registry(
    "encoder", "geopurify.encoders", {"clip-hf": ClipHFEncoder, "siglip": SiglipEncoder,
                                      "mask-embed": _mask_embed,
                                      "sam3": Sam3Encoder, "precomputed": PrecomputedEncoder, "masks": _masks})
TEXT_ENCODERS: Registry[Callable[..., TextEncoder]] = Registry(
    "text encoder", "geopurify.text_encoders", {"minilm": MiniLMTextEncoder, "clip-hf": ClipHFEncoder,
                                                        "siglip": SiglipEncoder})


def get_encoder(name: str, **options: Any) -> ImageEncoder:
    """Build an image encoder by name (built-in or entry point), e.g. ``get_encoder("clip-hf", source="my-clip/")``.

    Raises:
        UnknownNameError: no such encoder; the message lists the available ones.
    """
    return ENCODERS.build(name, **options)


def get_text_encoder(name: str, **options: Any) -> TextEncoder:
    """Build a text encoder by name (built-in or entry point), e.g. ``get_text_encoder("minilm")``."""
    return TEXT_ENCODERS.build(name, **options)


def encode_vocabulary(text_encoder: TextEncoder, names: list[str], template: str | None = None) -> torch.Tensor:
    """Embed class names or free texts the way the features were made: ``(len(names), D)`` unit rows.

    Each name goes into ``template`` (default: the text encoder's own, e.g. ``"a {} in a scene"`` for
    CLIP-family towers, ``"{}"`` for sentence encoders such as ``minilm``).
    """
    t = template if template is not None else getattr(text_encoder, "template", "{}")
    emb = text_encoder.encode_text([t.format(n) for n in names])
    return torch.nn.functional.normalize(emb.float(), dim=1)


__all__ = ["ImageEncoder", "TextEncoder", "ENCODERS", "TEXT_ENCODERS", "get_encoder", "get_text_encoder",
           "encode_vocabulary"]
