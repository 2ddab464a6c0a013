"""Tiny randomly initialised CLIP / SigLIP / SigLIP 2 models, saved as Hugging Face folders for the encoder tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, processors

CLIP_WORDS = ["a", "in", "scene", "chair", "table", "wall", "floor", "sofa"]
SIGLIP_WORDS = ["this", "is", "a", "photo", "of", "chair", "table", "wall", "."]
SIGLIP_DIM = 32


def _word_tokenizer(root: Path, words: list[str], specials: dict[str, int], template: str, **kwargs: object) -> int:
    vocab = {**specials, **{w: i + len(specials) for i, w in enumerate(words)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(single=template, special_tokens=[
        (t, i) for t, i in specials.items() if t in template])
    transformers.PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]",
                                         **kwargs).save_pretrained(root)
    return len(vocab)


def make_clip(root: Path) -> Path:
    """A 3-layer CLIP (hidden 32, patch 8, 32 px, projection 24) with its tokenizer and preprocessor stats."""
    torch.manual_seed(0)
    n = _word_tokenizer(root, CLIP_WORDS, {"[PAD]": 0, "[UNK]": 1, "[BOS]": 2, "[EOS]": 3}, "[BOS] $A [EOS]",
                        bos_token="[BOS]", eos_token="[EOS]")
    cfg = transformers.CLIPConfig(
        text_config=dict(vocab_size=n, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=16, eos_token_id=3, bos_token_id=2,
                         pad_token_id=0),
        vision_config=dict(hidden_size=32, intermediate_size=40, num_hidden_layers=3, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=24)
    transformers.CLIPModel(cfg).eval().save_pretrained(root)
    (root / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25] * 3}))
    return root


def _siglip_configs(n_vocab: int) -> tuple[dict, dict]:
    text = dict(vocab_size=n_vocab, hidden_size=SIGLIP_DIM, intermediate_size=40, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=12, pad_token_id=0, bos_token_id=2, eos_token_id=2)
    vision = dict(hidden_size=SIGLIP_DIM, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4, patch_size=8)
    return text, vision


def _siglip_tokenizer(root: Path) -> int:
    """Word-level with an end token; input ids only, as SigLIP's tokenizer returns."""
    return _word_tokenizer(root, SIGLIP_WORDS, {"[PAD]": 0, "[UNK]": 1, "[EOS]": 2}, "$A [EOS]", eos_token="[EOS]",
                           model_input_names=["input_ids"])


def make_siglip(root: Path) -> Path:
    """A 2-layer SigLIP (hidden 32, patch 8, 32 px) with logit scale 2 (exp: 7.39) and bias -3."""
    torch.manual_seed(0)
    text, vision = _siglip_configs(_siglip_tokenizer(root))
    model = transformers.SiglipModel(transformers.SiglipConfig(text_config=text, vision_config={**vision, "image_size": 32}))
    with torch.no_grad():
        model.logit_scale.fill_(2.0)
        model.logit_bias.fill_(-3.0)
    model.eval().save_pretrained(root)
    return root


def make_siglip2(root: Path) -> Path:
    """A 2-layer SigLIP 2 (NaFlex: patchified input, 4 x 4 position grid, patch 8)."""
    torch.manual_seed(0)
    text, vision = _siglip_configs(_siglip_tokenizer(root))
    cfg = transformers.Siglip2Config(text_config=text, vision_config={**vision, "num_patches": 16})
    transformers.Siglip2Model(cfg).eval().save_pretrained(root)
    return root


def make_sam3(root: Path) -> Path:
    """A tiny SAM 3 (ViT 2 layers, hidden 32, 112 px input at patch 14, 8 queries, masks 32 x 32) with a CLIP
    word tokenizer; needs torchvision (transformers' SAM 3 does)."""
    torch.manual_seed(0)
    n = _word_tokenizer(root, CLIP_WORDS, {"[PAD]": 0, "[UNK]": 1, "[BOS]": 2, "[EOS]": 3}, "[BOS] $A [EOS]",
                        bos_token="[BOS]", eos_token="[EOS]")
    h = 32
    layers = dict(hidden_size=h, num_attention_heads=2, intermediate_size=48)
    vit = transformers.Sam3ViTConfig(hidden_size=h, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                                     image_size=112, patch_size=14, window_size=4, global_attn_indexes=[1],
                                     pretrain_image_size=56)
    cfg = transformers.Sam3Config(
        vision_config=dict(backbone_config=vit, fpn_hidden_size=h, backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]]),
        text_config=dict(vocab_size=n, hidden_size=h, intermediate_size=48, projection_dim=h, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16, eos_token_id=3, bos_token_id=2,
                         pad_token_id=0),
        geometry_encoder_config=dict(num_layers=1, **layers), detr_encoder_config=dict(num_layers=1, **layers),
        detr_decoder_config=dict(num_layers=1, num_queries=8, **layers),
        mask_decoder_config=dict(hidden_size=h, num_attention_heads=2))
    transformers.Sam3Model(cfg).eval().save_pretrained(root)
    return root


def make_sam(root: Path) -> Path:
    """A tiny SAM (ViT 2 layers, 64 px) with its processor, for transformers' mask-generation pipeline."""
    torch.manual_seed(0)
    vision = dict(hidden_size=32, output_channels=16, num_hidden_layers=2, num_attention_heads=2, image_size=64,
                  patch_size=8, mlp_dim=48, global_attn_indexes=[1], window_size=4, num_pos_feats=8)
    cfg = transformers.SamConfig(vision_config=vision,
                                 prompt_encoder_config=dict(hidden_size=16, image_size=64, patch_size=8,
                                                            mask_input_channels=4),
                                 mask_decoder_config=dict(hidden_size=16, num_attention_heads=2, mlp_dim=32,
                                                          iou_head_hidden_dim=16))
    transformers.SamModel(cfg).eval().save_pretrained(root)
    transformers.SamProcessor(transformers.SamImageProcessor(size={"longest_edge": 64},
                                                             pad_size={"height": 64, "width": 64})).save_pretrained(root)
    return root
