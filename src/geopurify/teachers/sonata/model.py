"""Point Transformer V3 encoder (Sonata's backbone, ``PT-v3m2`` with ``enc_mode=True``) in plain PyTorch.

Inference only (eval mode: no drop-path, no dropout). Submodules carry the official names, so a
released state dict loads with one mapping (``checkpoint.py``). Per stage ``s``:

* ``s > 0``: grid pooling ``down``: voxel coordinates ``// stride``; ``proj`` (linear), max over each
  coarse voxel, LayerNorm, GELU. ``s == 0``: ``embedding``: linear, LayerNorm, GELU.
* the stage's voxels are serialized under every order of the config (``serialization.py``);
* ``enc_depths[s]`` blocks; block ``i`` attends under order ``i % len(order)``:
  ``x += cpe(x)`` (submanifold conv 3³ + linear + LayerNorm), ``x += ls1(attn(norm1(x)))``,
  ``x += ls2(mlp(norm2(x)))`` (pre-norm; post-norm when ``pre_norm`` is false).

Serialized patch attention (PTv3's non-flash path, which the released weights run without
flash-attn): with ``M`` voxels the patch size is ``K = min(M, enc_patch_size[s])``; the voxels in
serialized order are cut into ``ceil(M / K)`` patches of ``K``; when ``K`` does not divide ``M`` the
last patch is filled up with the ``K - M % K`` voxels just before it (so it holds the last ``K``
voxels), and those voxels keep the output of their own, earlier patch. Attention inside each patch is
``scaled_dot_product_attention`` (no mask), evaluated ``chunk`` patches at a time.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ...student.sparse import KernelMap, SparseConv3d, build_kernel_map
from .config import PTv3Config
from .serialization import encode, serialization_depth


@dataclass(eq=False)
class Stage:
    """One stage's voxels.

    Attributes:
        grid: ``(M, 3) int64`` voxel coordinates (in units of this stage's voxel edge).
        feat: ``(M, C)`` features.
        parent: ``(M_prev,) int64`` index of each previous-stage voxel's voxel here (``None`` at stage 0).
        kmap: the 3³ kernel map of ``grid``.
        orders, inverses: ``(k, M) int64`` per serialization order: voxel indices in curve order, and
            each voxel's position in it.
    """

    grid: torch.Tensor
    feat: torch.Tensor
    parent: torch.Tensor | None
    kmap: KernelMap = field(init=False)
    orders: torch.Tensor = field(init=False)
    inverses: torch.Tensor = field(init=False)

    def serialize(self, order: tuple[str, ...]) -> None:
        depth = serialization_depth(self.grid)
        codes = torch.stack([encode(self.grid, depth, o) for o in order])
        self.orders = torch.argsort(codes, dim=1)
        self.inverses = torch.argsort(self.orders, dim=1)
        self.kmap = build_kernel_map(self.grid, 3)


def patch_index(m: int, k: int) -> torch.Tensor:
    """Positions ``(P,)`` in the serialized sequence of ``m`` voxels that fill ``P / k`` patches of ``k``
    (PTv3's padding rule, module docstring)."""
    idx = torch.arange(m)
    r = m % k
    if m <= k or r == 0:
        return idx
    return torch.cat([idx, idx[m - k:m - r]])


def patch_attention(qkv: torch.Tensor, order: torch.Tensor, inverse: torch.Tensor, heads: int, patch_max: int,
                    scale: float, chunk: int) -> torch.Tensor:
    """Serialized patch self-attention.

    Args:
        qkv: ``(M, 3C)`` packed queries, keys, values (the ``qkv`` linear's output).
        order, inverse: ``(M,)`` one serialization order and its inverse permutation.
        heads: attention heads ``H`` (``C % H == 0``).
        patch_max: the configured patch size.
        scale: softmax scale (``head_dim ** -0.5`` unless ``qk_scale`` is set).
        chunk: patches per ``scaled_dot_product_attention`` call (bounds the ``(chunk, H, K, K)`` scores).
    Returns:
        ``(M, C)`` attention output per voxel, before ``proj``.
    """
    m, c3 = qkv.shape
    c = c3 // 3
    k = min(m, patch_max)
    seq = qkv[order[patch_index(m, k).to(order.device)]].view(-1, k, 3, heads, c // heads)
    out = torch.empty(seq.shape[0], k, c, dtype=qkv.dtype, device=qkv.device)
    for s in range(0, seq.shape[0], chunk):
        q, kk, v = seq[s:s + chunk].permute(2, 0, 3, 1, 4).unbind(0)     # (B, H, K, D) each
        o = F.scaled_dot_product_attention(q, kk, v, scale=scale)
        out[s:s + chunk] = o.transpose(1, 2).reshape(-1, k, c)
    return out.view(-1, c)[:m][inverse]


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class MLP(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SerializedAttention(nn.Module):
    def __init__(self, channels: int, heads: int, patch_size: int, qkv_bias: bool, qk_scale: float | None,
                 order_index: int) -> None:
        super().__init__()
        self.heads, self.patch_size, self.order_index = heads, patch_size, order_index
        self.scale = qk_scale or (channels // heads) ** -0.5
        self.qkv = nn.Linear(channels, 3 * channels, bias=qkv_bias)
        self.proj = nn.Linear(channels, channels)
        self.chunk = 64

    def forward(self, x: torch.Tensor, stage: Stage) -> torch.Tensor:
        i = self.order_index
        budget = max(1, (1 << 25) // (self.heads * min(self.patch_size, x.shape[0]) ** 2))
        out = patch_attention(self.qkv(x), stage.orders[i], stage.inverses[i], self.heads, self.patch_size,
                              self.scale, min(self.chunk, budget))
        return self.proj(out)


def _scale(c: int, layer_scale: float | None) -> nn.Sequential:
    return nn.Sequential(LayerScale(c, layer_scale) if layer_scale is not None else nn.Identity())


class Block(nn.Module):
    def __init__(self, cfg: PTv3Config, s: int, i: int) -> None:
        super().__init__()
        c = cfg.enc_channels[s]
        self.pre_norm = cfg.pre_norm
        self.cpe = nn.Sequential(SparseConv3d(c, c, 3, bias=True), nn.Linear(c, c), nn.LayerNorm(c))
        self.norm1 = nn.Sequential(nn.LayerNorm(c))
        self.ls1 = _scale(c, cfg.layer_scale)
        self.attn = SerializedAttention(c, cfg.enc_num_head[s], cfg.enc_patch_size[s], cfg.qkv_bias, cfg.qk_scale,
                                        i % len(cfg.order))
        self.norm2 = nn.Sequential(nn.LayerNorm(c))
        self.ls2 = _scale(c, cfg.layer_scale)
        self.mlp = nn.Sequential(MLP(c, int(c * cfg.mlp_ratio)))

    def forward(self, x: torch.Tensor, stage: Stage) -> torch.Tensor:
        conv, lin, norm = self.cpe
        x = x + norm(lin(conv(x, stage.kmap)))
        h = self.ls1(self.attn(self.norm1(x) if self.pre_norm else x, stage))
        x = x + h if self.pre_norm else self.norm1(x + h)
        h = self.ls2(self.mlp(self.norm2(x) if self.pre_norm else x))
        return x + h if self.pre_norm else self.norm2(x + h)


class GridPooling(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.proj = nn.Linear(c_in, c_out)
        self.norm = nn.Sequential(nn.LayerNorm(c_out))
        self.act = nn.Sequential(nn.GELU())

    def forward(self, stage: Stage) -> Stage:
        grid = torch.div(stage.grid, self.stride, rounding_mode="floor")
        grid, cluster = torch.unique(grid, dim=0, sorted=True, return_inverse=True)
        x = self.proj(stage.feat)
        pooled = x.new_empty(grid.shape[0], x.shape[1]).scatter_reduce_(
            0, cluster.unsqueeze(1).expand_as(x), x, reduce="amax", include_self=False)
        return Stage(grid, self.act(self.norm(pooled)), cluster)


class Embedding(nn.Module):
    def __init__(self, c_in: int, c_out: int, mask_token: bool) -> None:
        super().__init__()
        self.stem = nn.Sequential(OrderedDict(linear=nn.Linear(c_in, c_out), norm=nn.LayerNorm(c_out), act=nn.GELU()))
        self.mask_token = nn.Parameter(torch.zeros(1, c_out)) if mask_token else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)


class PointTransformerV3(nn.Module):
    """PTv3 encoder: ``forward(grid (M, 3) int64, feat (M, in_channels)) -> list of Stage``.

    ``grid`` holds distinct non-negative voxel coordinates (``preprocess.grid_sample``); stage 0 keeps
    their order. The output lists every stage, finest first, each with its pooling ``parent`` index.
    """

    def __init__(self, cfg: PTv3Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.embedding = Embedding(cfg.in_channels, cfg.enc_channels[0], cfg.mask_token)
        self.enc = nn.Sequential()
        for s in range(cfg.num_stages):
            stage = nn.Sequential()
            if s > 0:
                stage.add_module("down", GridPooling(cfg.enc_channels[s - 1], cfg.enc_channels[s], cfg.stride[s - 1]))
            for i in range(cfg.enc_depths[s]):
                stage.add_module(f"block{i}", Block(cfg, s, i))
            self.enc.add_module(f"enc{s}", stage)

    @torch.inference_mode()
    def forward(self, grid: torch.Tensor, feat: torch.Tensor) -> list[Stage]:
        st = Stage(grid.long(), self.embedding(feat), None)
        st.serialize(self.cfg.order)
        stages = [st]
        for layers in self.enc:
            for layer in layers:
                if isinstance(layer, GridPooling):
                    st = layer(st)
                    st.serialize(self.cfg.order)
                    stages.append(st)
                else:
                    st.feat = layer(st.feat, st)
        return stages


__all__ = ["PointTransformerV3", "Stage", "patch_attention", "patch_index"]
