"""SigLIP and SigLIP 2 models in Hugging Face ``transformers`` format: dense image features and text.

SigLIP pools its image with an attention-pooling head (one learnt probe attending to all patch tokens,
then a layernorm + MLP residual), not with a class token. MaskCLIP's idea (Zhou et al., ECCV 2022)
carried to that head: every patch token goes through the head's value and output projections as if it
were the only key the probe attended to, then through the head's MLP residual:

    y_i = out_proj(W_v z_i + b_v),    dense_i = y_i + mlp(layernorm(y_i)),
    z = post_layernorm(encoder(patch_embed(x) + pos))

so ``dense_i`` is exactly what the pooled image embedding would be for an image whose probe attention
fell on patch ``i`` alone. With ``attention="clearclip"`` the head's values are mixed by query-query
attention between patches (``q_i = W_q z_i``) and the MLP residual is dropped (ClearCLIP's rule,
:mod:`geopurify.encoders._hf`; applied to the head because the head is where SigLIP pools).

Position embeddings are interpolated for non-square frames: bicubically (``interpolate_pos_encoding``,
SigLIP) or by SigLIP 2's own bilinear resize (``spatial_shapes``). Text embeddings use the model's own
text tower with ``padding="max_length"`` (as SigLIP was trained); the model's ``logit_scale`` (``exp``
applied) and ``logit_bias`` are exposed. Consensus fusion takes a softmax over classes, which a bias
shared by all classes does not change, so only the scale enters lifting.
"""

from __future__ import annotations

import os

import torch

from ._hf import PatchInput, check_attention, image_stats, load_pretrained, mix_values
from .base import TextEncoder

DEFAULT_TEMPLATE = "This is a photo of {}."
"""The prompt Hugging Face's zero-shot pipeline uses for SigLIP (its model card: "to get the same results
as the pipeline, a prompt template of 'This is a photo of {label}.' should be used")."""
SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)


class SiglipEncoder(PatchInput):
    """A SigLIP (``SiglipModel``) or SigLIP 2 (``Siglip2Model``) model from a folder or hub id.

    It is both an :class:`~geopurify.encoders.ImageEncoder` (dense features, module docstring) and the
    :class:`~geopurify.encoders.TextEncoder` of its own features.

    Args:
        source: ``save_pretrained`` folder (config, weights, tokenizer), or a hub id where the network
            allows, e.g. ``google/siglip2-base-patch16-512``.
        device: torch device.
        short_side: input resolution of the short side in pixels (default: the model's training size);
            the long side keeps the aspect ratio, both rounded to the patch size.
        template: prompt template for class names, default ``"This is a photo of {}."``.
        attention: dense rule of the head, ``"maskclip"`` (default) or ``"clearclip"``.
        dtype: weights' dtype, ``auto`` (float16 on CUDA, float32 elsewhere), ``float32``, ``float16``, ``bfloat16``.
        text_encoder: another text encoder to embed vocabularies with (default: this model's text tower).
    """

    name = "siglip"

    def __init__(self, source: str | os.PathLike[str], device: str = "cpu", short_side: int | None = None,
                 template: str = DEFAULT_TEMPLATE, attention: str = "maskclip", dtype: str = "auto",
                 text_encoder: TextEncoder | None = None) -> None:
        self.attention = check_attention(attention)
        self.model, self.tokenizer = load_pretrained(("SiglipModel", "Siglip2Model"), source, "SigLIP model",
                                                     "siglip", "the siglip encoder", device, dtype)
        self.source, self.device, self.template = str(source), device, template
        vcfg = self.model.config.vision_config
        self.patch = int(vcfg.patch_size)
        self.naflex = isinstance(self.model.vision_model.embeddings.patch_embedding, torch.nn.Linear)
        side = int(getattr(vcfg, "num_patches", 0) ** 0.5 * self.patch) if self.naflex else int(vcfg.image_size)
        self.image_size = side
        self.short_side = int(short_side or side)
        self.mean, self.std = image_stats(source, SIGLIP_MEAN, SIGLIP_STD)
        self.logit_scale = float(self.model.logit_scale.detach().float().exp())
        self.logit_bias = float(self.model.logit_bias.detach().float())
        self.dim = int(vcfg.hidden_size)
        self.text_max_length = int(self.model.config.text_config.max_position_embeddings)
        self.text_encoder: TextEncoder = text_encoder if text_encoder is not None else self

    def _tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, 3, h, w)`` -> ``(B, h w / patch^2, E)``: the vision tower's post-layernorm patch tokens."""
        vm = self.model.vision_model
        B, _, h, w = pixel_values.shape
        if self.naflex:   # SigLIP 2 takes patchified pixels (channel-last inside a patch) and their grid shape
            p = self.patch
            flat = pixel_values.reshape(B, 3, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(B, -1, 3 * p * p)
            shapes = torch.tensor([[h // p, w // p]] * B, device=pixel_values.device)
            x = vm.embeddings(flat, shapes)
        else:
            x = vm.embeddings(pixel_values, interpolate_pos_encoding=True)
        out = vm.encoder(inputs_embeds=x)
        return vm.post_layernorm(out[0] if isinstance(out, tuple) else out.last_hidden_state)

    @torch.inference_mode()
    def dense_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Dense patch features (module docstring): ``(B, 3, h, w)`` -> ``(B, h / patch, w / patch, E)`` (not normalised)."""
        z = self._tokens(pixel_values)
        head = self.model.vision_model.head
        E = z.shape[-1]
        att = head.attention
        wq, wv = att.in_proj_weight[:E], att.in_proj_weight[2 * E:]
        bq, bv = att.in_proj_bias[:E], att.in_proj_bias[2 * E:]
        v = z @ wv.T + bv
        mixed = mix_values(z @ wq.T + bq, v, att.num_heads, self.attention)
        y = att.out_proj(mixed)
        if self.attention == "maskclip":
            y = y + head.mlp(head.layernorm(y))
        B, _, h, w = pixel_values.shape
        return y.reshape(B, h // self.patch, w // self.patch, E)

    @torch.inference_mode()
    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The pooled image embeddings: ``(B, 3, s, s)`` at the training size -> ``(B, E)`` L2-normalised float32."""
        head = self.model.vision_model.head
        return torch.nn.functional.normalize(head(self._tokens(pixel_values)).float(), dim=1)

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``(len(texts), E)`` L2-normalised text embeddings (texts used as given, padded to the max length; an
        attention mask only where the tokenizer names one, as ``model(**processor(...))`` does)."""
        tok = self.tokenizer(list(texts), padding="max_length", max_length=self.text_max_length, truncation=True,
                             return_tensors="pt").to(self.device)
        mask = tok.get("attention_mask") if "attention_mask" in self.tokenizer.model_input_names else None
        out = self.model.get_text_features(input_ids=tok["input_ids"], attention_mask=mask)
        emb = out if isinstance(out, torch.Tensor) else out.pooler_output
        return torch.nn.functional.normalize(emb.float().cpu(), dim=1)
