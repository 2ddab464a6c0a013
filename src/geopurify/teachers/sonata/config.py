"""The PTv3 configuration a Sonata checkpoint carries (``ckpt["config"]``), validated.

The keys are the keyword arguments of the official ``PointTransformerV3`` (Sonata 18c09ff). Keys
that only matter for training (drop-path, dropout, order shuffling, flash-attn and upcast switches,
freezing, tracing) are accepted and have no effect in this inference-only model; an unknown key or
an unsupported setting (a decoder, ``enc_mode=False``; relative position encoding) is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ...errors import InputError
from .serialization import ORDERS

# official keyword arguments with no effect on eval-mode encoder outputs
TRAINING_ONLY = frozenset({
    "attn_drop", "proj_drop", "drop_path", "shuffle_orders", "enable_flash", "upcast_attention",
    "upcast_softmax", "traceable", "freeze_encoder", "dec_depths", "dec_channels", "dec_num_head",
    "dec_patch_size",
})


@dataclass(frozen=True)
class PTv3Config:
    """Encoder hyper-parameters (official defaults; Sonata's released model overrides some).

    Attributes:
        in_channels: input feature channels (Sonata: 9 = centred xyz, colour in [0, 1], normal).
        order: serialization orders, cycled over the blocks of each stage.
        stride: pooling stride between consecutive stages.
        enc_depths, enc_channels, enc_num_head, enc_patch_size: per stage.
        mlp_ratio: MLP hidden width over channels.
        qkv_bias: bias in the ``qkv`` linear.
        qk_scale: softmax scale; ``None``: ``head_dim ** -0.5``.
        layer_scale: LayerScale initial value, ``None`` for none.
        pre_norm: pre-norm blocks (PTv3 default) or post-norm.
        mask_token: the embedding has a (training-only) mask token parameter.
        enable_rpe: relative position encoding (unsupported; Sonata does not use it).
        enc_mode: encoder only (required; Sonata is an encoder).
    """

    in_channels: int = 6
    order: tuple[str, ...] = ("z", "z-trans")
    stride: tuple[int, ...] = (2, 2, 2, 2)
    enc_depths: tuple[int, ...] = (3, 3, 3, 12, 3)
    enc_channels: tuple[int, ...] = (48, 96, 192, 384, 512)
    enc_num_head: tuple[int, ...] = (3, 6, 12, 24, 32)
    enc_patch_size: tuple[int, ...] = (1024, 1024, 1024, 1024, 1024)
    mlp_ratio: float = 4
    qkv_bias: bool = True
    qk_scale: float | None = None
    layer_scale: float | None = None
    pre_norm: bool = True
    mask_token: bool = False
    enable_rpe: bool = False
    enc_mode: bool = False

    def __post_init__(self) -> None:
        for name in ("order", "stride", "enc_depths", "enc_channels", "enc_num_head", "enc_patch_size"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        n = self.num_stages
        if len(self.stride) != n - 1 or any(len(getattr(self, k)) != n for k in
                                            ("enc_channels", "enc_num_head", "enc_patch_size")):
            raise InputError(f"PTv3 config: {n} stages need {n - 1} strides and {n} channels, heads, patch sizes")
        if unknown := [o for o in self.order if o not in ORDERS]:
            raise InputError(f"PTv3 config: unknown serialization order(s) {unknown}; known: {list(ORDERS)}")
        if any(c % h for c, h in zip(self.enc_channels, self.enc_num_head)):
            raise InputError("PTv3 config: enc_channels must be divisible by enc_num_head")
        if not self.enc_mode:
            raise InputError("PTv3 config: only encoder checkpoints (enc_mode=True, as Sonata) are supported")
        if self.enable_rpe:
            raise InputError("PTv3 config: relative position encoding (enable_rpe) is not supported")

    @property
    def num_stages(self) -> int:
        return len(self.enc_depths)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> PTv3Config:
        """Validate a checkpoint's ``config``; unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known - TRAINING_ONLY)
        if unknown:
            raise InputError(f"PTv3 config has unknown key(s) {unknown}")
        return cls(**{k: v for k, v in config.items() if k in known})


__all__ = ["PTv3Config", "TRAINING_ONLY"]
