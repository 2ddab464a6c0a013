"""CLIP-family models in Hugging Face ``transformers`` format: dense MaskCLIP image features and text.

Dense features follow MaskCLIP (Zhou et al., ECCV 2022): in the last vision block, the value
embeddings of the patch tokens go through the attention output projection, skipping the query/key
attention and the MLP, then through the post-layernorm and the visual projection:

    dense = visual_projection(post_layernorm(out_proj(v_proj(layer_norm1(x_{L-1})))))[patches]

where ``x_{L-1}`` is the token sequence entering the last block; ``attention="clearclip"`` mixes the
values by query-query attention first (ClearCLIP's rule, :mod:`geopurify.encoders._hf`). Position embeddings are interpolated
for non-square inputs (``interpolate_pos_encoding``). The patch grid (h, w) covers the whole image;
points read the patch that contains their pixel (nearest upsampling).
"""

from __future__ import annotations

import os

import torch

from ._hf import PatchInput, check_attention, image_stats, load_pretrained, mix_values
from .base import TextEncoder

DEFAULT_TEMPLATE = "a {} in a scene"
"""The prompt of the official code (and of OpenScene) for class names."""
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipHFEncoder(PatchInput):
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
        attention: dense rule of the last block, ``"maskclip"`` (default) or ``"clearclip"``.
        dtype: weights' dtype, ``auto`` (float16 on CUDA, float32 elsewhere), ``float32``, ``float16``, ``bfloat16``.
        text_encoder: another text encoder to embed vocabularies with (default: this model's text tower).
    """

    name = "clip-hf"

    def __init__(self, source: str | os.PathLike[str], device: str = "cpu", short_side: int | None = None,
                 template: str = DEFAULT_TEMPLATE, attention: str = "maskclip", dtype: str = "auto",
                 text_encoder: TextEncoder | None = None) -> None:
        self.attention = check_attention(attention)
        self.model, self.tokenizer = load_pretrained(("CLIPModel",), source, "CLIP model", "clip",
                                                     "the clip-hf encoder", device, dtype)
        self.source = str(source)
        self.device = device
        vcfg = self.model.config.vision_config
        self.patch = int(vcfg.patch_size)
        self.image_size = int(vcfg.image_size)
        self.short_side = int(short_side or vcfg.image_size)
        self.template = template
        self.mean, self.std = image_stats(source, CLIP_MEAN, CLIP_STD)
        self.logit_scale = float(self.model.logit_scale.detach().float().exp())
        self.dim = int(self.model.config.projection_dim)
        self.text_encoder: TextEncoder = text_encoder if text_encoder is not None else self

    def _tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, 3, h, w)`` -> ``(B, 1 + N, E)``: the tokens entering the last block."""
        vm = self.model.vision_model
        x = vm.pre_layrnorm(vm.embeddings(pixel_values, interpolate_pos_encoding=True))
        for layer in vm.encoder.layers[:-1]:
            out = layer(x, None)
            x = out[0] if isinstance(out, tuple) else out
        return x

    @torch.inference_mode()
    def dense_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """MaskCLIP patch features: ``(B, 3, h, w)`` -> ``(B, h / patch, w / patch, D)`` (not normalised)."""
        vm = self.model.vision_model
        last = vm.encoder.layers[-1]
        a = last.layer_norm1(self._tokens(pixel_values))
        attn = last.self_attn
        v = attn.out_proj(mix_values(attn.q_proj(a), attn.v_proj(a), attn.num_heads, self.attention))
        feats = self.model.visual_projection(vm.post_layernorm(v))[:, 1:]
        B, _, h, w = pixel_values.shape
        return feats.reshape(B, h // self.patch, w // self.patch, -1)

    @torch.inference_mode()
    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """CLIP image embeddings: ``(B, 3, s, s)`` at the training size -> ``(B, D)`` L2-normalised float32."""
        out = self.model.get_image_features(pixel_values=pixel_values)
        emb = out if isinstance(out, torch.Tensor) else out.pooler_output
        return torch.nn.functional.normalize(emb.float(), dim=1)

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``(len(texts), D)`` L2-normalised text embeddings (texts are used as given)."""
        tok = self.tokenizer(list(texts), padding=True, return_tensors="pt").to(self.device)
        out = self.model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok.get("attention_mask"))
        emb = out if isinstance(out, torch.Tensor) else out.pooler_output
        return torch.nn.functional.normalize(emb.float().cpu(), dim=1)


