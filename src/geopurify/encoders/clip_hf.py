"""CLIP-family models in Hugging Face ``transformers`` format: dense MaskCLIP image features and text.

Dense features follow MaskCLIP (Zhou et al., ECCV 2022): in the last vision block, the value
embeddings of the patch tokens go through the attention output projection, skipping the query/key
attention and the MLP, then through the post-layernorm and the visual projection:

    dense = visual_projection(post_layernorm(out_proj(v_proj(layer_norm1(x_{L-1})))))[patches]

where ``x_{L-1}`` is the token sequence entering the last block. Position embeddings are interpolated
for non-square inputs (``interpolate_pos_encoding``). The patch grid (h, w) covers the whole image;
points read the patch that contains their pixel (nearest upsampling).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .._optional import require
from .._validate import check_source
from ..errors import InputError
from ..io.frames import Frame
from .base import TextEncoder
from .maps import DenseFeatures

DEFAULT_TEMPLATE = "a {} in a scene"
"""The prompt of the official code (and of OpenScene) for class names."""
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipHFEncoder:
    """A CLIP model from a local folder (or a hub id where the network allows).

    It is both an :class:`~geopurify.encoders.ImageEncoder` and the
    :class:`~geopurify.encoders.TextEncoder` of its own features (``text_encoder`` is itself).

    Args:
        source: folder with ``config.json``, weights and a tokenizer (``save_pretrained`` output), or a
            hub id where the network allows.
        device: torch device.
        short_side: input resolution of the image's short side in pixels (default: the model's
            training resolution); the long side keeps the aspect ratio, both rounded to the patch size.
        template: prompt template for class names, default ``"a {} in a scene"``.
        text_encoder: another text encoder to embed vocabularies with (default: this model's text tower).
    """

    name = "clip-hf"

    def __init__(self, source: str | os.PathLike[str], device: str = "cpu", short_side: int | None = None,
                 template: str = DEFAULT_TEMPLATE, text_encoder: TextEncoder | None = None) -> None:
        check_source(source, "CLIP model folder")
        transformers = require("transformers", "clip", feature="the clip-hf encoder")
        try:
            self.model = transformers.CLIPModel.from_pretrained(str(source)).eval().requires_grad_(False).to(device)
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(source))
        except Exception as exc:  # noqa: BLE001 - unreadable, refused (pickled weights) or incomplete model folder
            raise InputError(f"cannot load a CLIP model ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})",
                             source) from None
        self.source = str(source)
        self.device = device
        vcfg = self.model.config.vision_config
        self.patch = int(vcfg.patch_size)
        self.short_side = int(short_side or vcfg.image_size)
        self.template = template
        self.mean, self.std = CLIP_MEAN, CLIP_STD
        pre = Path(str(source)) / "preprocessor_config.json"
        if pre.is_file():
            cfg = json.loads(pre.read_text())
            self.mean, self.std = tuple(cfg.get("image_mean", self.mean)), tuple(cfg.get("image_std", self.std))
        self.logit_scale = float(self.model.logit_scale.detach().exp())
        self.dim = int(self.model.config.projection_dim)
        self.text_encoder: TextEncoder = text_encoder if text_encoder is not None else self

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """``(H, W, 3) uint8`` -> ``(1, 3, h, w)`` normalised, short side ``short_side``, sides multiples of the patch."""
        H, W = image.shape[:2]
        s = self.short_side / min(H, W)
        h = max(self.patch, round(H * s / self.patch) * self.patch)
        w = max(self.patch, round(W * s / self.patch) * self.patch)
        x = image.permute(2, 0, 1)[None].to(torch.float32) / 255.0
        x = torch.nn.functional.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return ((x.clamp(0, 1) - mean) / std).to(self.device)

    @torch.inference_mode()
    def dense_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """MaskCLIP patch features: ``(B, 3, h, w)`` -> ``(B, h / patch, w / patch, D)`` (not normalised)."""
        vm = self.model.vision_model
        x = vm.embeddings(pixel_values, interpolate_pos_encoding=True)
        x = vm.pre_layrnorm(x)
        layers = vm.encoder.layers
        for layer in layers[:-1]:
            out = layer(x, None)
            x = out[0] if isinstance(out, tuple) else out
        last = layers[-1]
        v = last.self_attn.out_proj(last.self_attn.v_proj(last.layer_norm1(x)))
        feats = self.model.visual_projection(vm.post_layernorm(v))[:, 1:]
        B, _, h, w = pixel_values.shape
        return feats.reshape(B, h // self.patch, w // self.patch, -1)

    def encode_frame(self, frame: Frame) -> DenseFeatures:
        return DenseFeatures(self.dense_features(self.preprocess(frame.image))[0].float().cpu())

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``(len(texts), D)`` L2-normalised text embeddings (texts are used as given)."""
        tok = self.tokenizer(list(texts), padding=True, return_tensors="pt").to(self.device)
        out = self.model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok.get("attention_mask"))
        emb = out if isinstance(out, torch.Tensor) else out.pooler_output
        return torch.nn.functional.normalize(emb.float().cpu(), dim=1)


