"""The two encoder interfaces: an image encoder makes per-frame feature maps, a text encoder embeds texts."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from ..io.frames import Frame
from .maps import FrameFeatures


@runtime_checkable
class TextEncoder(Protocol):
    """Embeds texts: ``encode_text(texts) -> (len(texts), dim)`` L2-normalised float32.

    ``template`` is the prompt a class name is put in before embedding (``"{}"``: the name as it is).
    """

    name: str
    dim: int
    template: str

    def encode_text(self, texts: list[str]) -> torch.Tensor: ...


@runtime_checkable
class ImageEncoder(Protocol):
    """Turns frames into feature maps.

    ``dim``: feature size (None until the first frame when the encoder cannot know it earlier);
    ``logit_scale``: the scale of consensus fusion's logits for these features. An encoder whose
    features live in a text encoder's space may expose it as ``text_encoder`` (optional attribute).

    Optional method ``encode_frames(frames: list[Frame]) -> list[FrameFeatures]``: the feature maps of
    several frames at once, in order, each equal to what ``encode_frame`` gives for it (``clip-hf`` and
    ``siglip`` stack same-size inputs into one forward pass). Lifting calls it for groups of
    ``LiftConfig.batch_frames`` frames where the encoder has it, else ``encode_frame`` frame by frame;
    it is not part of the runtime check.
    """

    name: str
    dim: int | None
    logit_scale: float

    def encode_frame(self, frame: Frame) -> FrameFeatures: ...
