"""Lifting 2D features onto 3D points: projection with an occlusion test, and multi-view fusion.

For every frame, each point is projected into the colour image (:mod:`geopurify.camera`). It is
*visible* when it is in front of the camera, lands inside the image less a ``border``, and passes the
depth test ``|depth[v, u] - z| <= tau * depth[v, u]`` (invalid depth, 0, fails). Frames without a
depth image get one rendered from the points by z-buffer splatting (:mod:`geopurify.render`).

Fusion of the per-view features of each point:

* ``mean``: the average of the raw features over the views that see the point (OpenScene).
* ``consensus`` (GeoPurify): per-view features are L2-normalised and scored against the vocabulary,
  ``logits_v = s * f_v . t_c``; the consensus class ``c*`` maximises the mean logit over views; the
  fused feature is ``sum_v softmax(logits_v[c*]) f_v`` over the ``min(M, 3)`` views with the highest
  ``logits_v[c*]`` (no renormalisation). It streams over frames twice: pass one keeps, per point and
  class, a running top-3 of (logit, frame); pass two re-reads only the chosen views' features.

Points that no frame sees take the feature of the nearest seen point; ``seen`` records which.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ._fileio import atomic_path
from ._validate import all_finite
from .camera import scale_intrinsics
from .errors import InputError
from .features import FrameFeatures, row_chunks
from .frames import Frame, Frames
from .geometry import knn
from .render import point_spacing, render_depth
from .scene import Scene

log = logging.getLogger("geopurify.lifting")

FORMAT_VERSION = 1


@dataclass(frozen=True)
class LiftConfig:
    """Settings of :func:`lift_features`.

    Attributes:
        fusion: ``"consensus"`` (GeoPurify) or ``"mean"``.
        top_views: views kept by consensus fusion (upstream: 3).
        depth_tolerance: relative depth test ``tau`` (ScanNet 0.05, Matterport3D 0.02).
        border: pixels at the image border where points are not taken (upstream: 10).
        frame_step: use every ``frame_step``-th frame.
        render_width: width of the depth image rendered for frames without depth.
        max_splat_radius: cap on the splat half-width when rendering depth, in pixels.
        logit_scale: ``s`` of consensus fusion; ``None`` = the encoder's own.
        fill_unseen: give unseen points the feature of the nearest seen point.
        cache_bytes: encoder outputs kept in memory between the two consensus passes (beyond this
            budget frames are encoded again).
    """

    fusion: str = "consensus"
    top_views: int = 3
    depth_tolerance: float = 0.05
    border: int = 10
    frame_step: int = 1
    render_width: int = 320
    max_splat_radius: int = 6
    logit_scale: float | None = None
    fill_unseen: bool = True
    cache_bytes: int = 2 << 30

    def __post_init__(self) -> None:
        if self.fusion not in ("consensus", "mean"):
            raise ValueError(f"fusion must be 'consensus' or 'mean', got {self.fusion!r}")
        if self.top_views < 1 or self.frame_step < 1 or self.border < 0 or self.depth_tolerance <= 0:
            raise ValueError(f"invalid lifting settings: {self}")


@dataclass(frozen=True, eq=False)
class Visibility:
    """The points one frame sees.

    Attributes:
        index: ``(M,) int64`` indices of the visible points.
        pixels: ``(M, 2) int64`` their colour-image pixel ``(row, col)``.
    """

    index: torch.Tensor
    pixels: torch.Tensor


def visible_points(coords: torch.Tensor, frame: Frame, *, depth_tolerance: float = 0.05, border: int = 10,
                   spacing: float | None = None, render_width: int = 320, max_splat_radius: int = 6) -> Visibility:
    """Which points a frame sees, and where (vectorised over points).

    Args:
        coords: ``(N, 3)`` world points (metres).
        frame: the frame; without depth, a depth image ``render_width`` wide is rendered from
            ``coords`` (same field of view) with splats sized by ``spacing``.
        depth_tolerance: ``tau`` of the relative depth test.
        border: margin in colour pixels.
        spacing: point spacing for rendering (default: measured from ``coords``).
    Returns:
        :class:`Visibility` of the visible points, in increasing point order.
    """
    W, H = frame.size
    # geopurify.camera's pinhole model, inlined for speed: camera coordinates R^T (x_w - t) = x_w R - t R in
    # one float32 product (errors ~1e-6 m), then u = fx x / z + cx, v = fy y / z + cy, pixel (round(v), round(u))
    T = torch.from_numpy(frame.cam_to_world)
    R = T[:3, :3]
    cam = torch.addmm((-(T[:3, 3] @ R)).to(torch.float32), coords.to(torch.float32), R.to(torch.float32))
    x, y, z = cam.unbind(1)
    inv_z = 1.0 / z                                       # z <= 0 is rejected below; inf/nan compare False
    fx, fy, cx, cy = (float(v) for v in (frame.intrinsics[0, 0], frame.intrinsics[1, 1], frame.intrinsics[0, 2],
                                         frame.intrinsics[1, 2]))
    u = (x * inv_z).mul_(fx).add_(cx).round_()
    v = (y * inv_z).mul_(fy).add_(cy).round_()
    inside = (z > 0) & (u >= border) & (u < W - border) & (v >= border) & (v < H - border)
    idx = torch.nonzero(inside).flatten()
    if frame.depth is not None:
        depth, K_d = frame.depth, frame.depth_intrinsics
    else:
        w = min(render_width, W)
        h = max(1, round(H * w / W))
        K_d = scale_intrinsics(frame.intrinsics, (W, H), (w, h))
        sp = point_spacing(coords) if spacing is None else spacing
        depth, _ = render_depth(coords, frame.cam_to_world, K_d, (w, h), sp, max_splat_radius)
    h, w = depth.shape
    u, v, z, inv_z = u[idx], v[idx], z[idx], inv_z[idx]
    if np.array_equal(K_d, frame.intrinsics):
        du, dv = u, v
    else:
        du = (x[idx] * inv_z).mul_(float(K_d[0, 0])).add_(float(K_d[0, 2])).round_()
        dv = (y[idx] * inv_z).mul_(float(K_d[1, 1])).add_(float(K_d[1, 2])).round_()
    ok = (du >= 0) & (du < w) & (dv >= 0) & (dv < h)
    d = torch.zeros_like(z)
    d[ok] = depth[dv[ok].long(), du[ok].long()]
    passes = (d > 0) & ((d - z).abs() <= depth_tolerance * d)
    idx = idx[passes]
    pixels = torch.stack([v[passes], u[passes]], 1).long()
    return Visibility(index=idx, pixels=pixels)


@dataclass(frozen=True, eq=False)
class LiftedFeatures:
    """Per-point 2D features lifted onto a scene.

    Attributes:
        features: ``(N, D) float32``.
        seen: ``(N,) bool``: seen by at least one frame (others were filled from the nearest seen point,
            or are zero when filling is off).
        view_counts: ``(N,) int32`` number of frames that see each point.
        encoder: name of the encoder that produced the features.
        settings: JSON-serialisable description (lifting config, encoder options, vocabulary, ...).
    """

    features: torch.Tensor
    seen: torch.Tensor
    view_counts: torch.Tensor
    encoder: str
    settings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        f = self.features
        if not isinstance(f, torch.Tensor) or f.dim() != 2 or f.dtype != torch.float32:
            raise InputError(f"features must be an (N, D) float32 tensor, got {getattr(f, 'dtype', type(f))} "
                             f"{tuple(getattr(f, 'shape', ()))}")
        n = f.shape[0]
        if self.seen.shape != (n,) or self.seen.dtype != torch.bool:
            raise InputError(f"seen must be ({n},) bool")
        if self.view_counts.shape != (n,):
            raise InputError(f"view_counts must be ({n},)")
        if not all_finite(f):
            raise InputError("features contain NaN or inf")

    @property
    def num_points(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write an ``.npz`` (features, seen, view_counts, JSON metadata), atomically."""
        meta = {"format_version": FORMAT_VERSION, "encoder": self.encoder, "settings": self.settings}
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, features=self.features.numpy(), seen=self.seen.numpy(),
                         view_counts=self.view_counts.numpy().astype(np.int32), meta=np.array(json.dumps(meta)))

    @classmethod
    def load(cls, path: str | os.PathLike[str], num_points: int | None = None) -> LiftedFeatures:
        """Read features written by :meth:`save`; ``num_points`` checks them against a scene.

        Raises:
            InputError: missing or malformed file, or a point count other than ``num_points``.
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                out = cls(torch.from_numpy(z["features"].astype(np.float32)), torch.from_numpy(z["seen"]),
                          torch.from_numpy(z["view_counts"].astype(np.int32)), meta["encoder"], meta["settings"])
        except FileNotFoundError:
            raise InputError("file not found", path) from None
        except InputError as exc:
            raise exc.at(path) from None
        except (KeyError, ValueError, OSError, json.JSONDecodeError) as exc:
            raise InputError(f"not a lifted-features file ({type(exc).__name__}: {exc})", path) from None
        if num_points is not None and out.num_points != num_points:
            raise InputError(f"has features for {out.num_points} points but the scene has {num_points}", path)
        return out


def fill_from_nearest(coords: torch.Tensor, features: torch.Tensor, seen: torch.Tensor,
                      inplace: bool = False) -> torch.Tensor:
    """Copy each unseen point's feature from its nearest seen point (KD-tree); ``inplace`` writes into
    ``features`` instead of a copy."""
    if bool(seen.all()) or not bool(seen.any()):
        return features
    seen_idx = torch.nonzero(seen).flatten()
    unseen_idx = torch.nonzero(~seen).flatten()
    _, nn = knn(coords[unseen_idx], coords[seen_idx], 1)
    out = features if inplace else features.clone()
    out[unseen_idx] = features[seen_idx[nn[:, 0]]]
    return out


_EMPTY_KEY = torch.iinfo(torch.int64).min
_LOW32 = 0xFFFFFFFF


def _score_keys(scores: torch.Tensor, frame: int) -> torch.Tensor:
    """``(M, C) float32`` scores of one frame as ``int64`` keys whose integer order is (score, earlier frame).

    High 32 bits: the float's bit pattern, all bits but the sign flipped for negative numbers (the usual
    order-preserving float-to-integer map); low 32 bits: ``2**32 - 1 - frame``, so equal scores rank the
    earlier frame first. A running top-k then needs only ``maximum``/``minimum`` on one tensor.
    """
    b = scores.to(torch.float32).contiguous().view(torch.int32)
    b = torch.where(b < 0, b ^ 0x7FFFFFFF, b)
    return (b.to(torch.int64) << 32) | (_LOW32 - frame)


def _decode_keys(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`_score_keys`: ``(scores float32, frames int64)``; empty slots give ``(-inf, -1)``."""
    empty = keys == _EMPTY_KEY
    hi = (keys >> 32).to(torch.int32)
    scores = torch.where(hi < 0, hi ^ 0x7FFFFFFF, hi).contiguous().view(torch.float32)
    frames = _LOW32 - (keys & _LOW32)
    return scores.masked_fill(empty, -torch.inf), frames.masked_fill(empty, -1)


class _EncodingCache:
    """Encoder outputs kept between the two consensus passes, within a byte budget."""

    def __init__(self, encode: Callable[[int], tuple[Frame, FrameFeatures]], budget: int) -> None:
        self.encode, self.budget, self.used = encode, budget, 0
        self.store: dict[int, tuple[tuple[int, int], FrameFeatures]] = {}

    def get(self, i: int) -> tuple[tuple[int, int], FrameFeatures]:
        if i in self.store:
            return self.store[i]
        frame, feats = self.encode(i)
        item = (frame.size, feats)
        if self.used + feats.nbytes <= self.budget:
            self.store[i] = item
            self.used += feats.nbytes
        return item


def lift_features(scene: Scene, frames: Frames, encode: Callable[[Frame], FrameFeatures], *,
                  config: LiftConfig = LiftConfig(), text_embeddings: torch.Tensor | None = None,
                  logit_scale: float = 100.0, encoder_name: str = "custom", settings: dict | None = None,
                  progress: bool = True) -> LiftedFeatures:
    """Lift per-frame 2D features onto the scene's points.

    Args:
        scene: the point cloud.
        frames: its posed frames (streamed; one frame's images in memory at a time).
        encode: maps a frame to its :data:`~geopurify.features.FrameFeatures`.
        config: projection and fusion settings.
        text_embeddings: ``(C, D)`` vocabulary embeddings, required by consensus fusion.
        logit_scale: consensus logit scale when ``config.logit_scale`` is None.
        encoder_name, settings: recorded in the result.
    Returns:
        :class:`LiftedFeatures` for every point of ``scene``.

    Memory beyond the result ``(N, D)``: one frame's features (plus up to ``config.cache_bytes`` of
    encoder outputs kept for pass two), each frame's visible points, and for consensus fusion the sums
    ``(N, C)`` float32 and running top-k keys ``k x (N, C)`` int64 (72 MB for 150k points, 20 classes, k=3).
    """
    sel = list(range(0, len(frames), config.frame_step))
    if not sel:
        raise InputError("no frames to lift from")
    coords = scene.coords
    n = scene.num_points
    spacing = point_spacing(coords) if not frames.has_depth else None
    vis_cache: dict[int, Visibility] = {}

    def encode_frame(i: int) -> tuple[Frame, FrameFeatures]:
        frame = frames[i]
        if i not in vis_cache:
            vis_cache[i] = visible_points(coords, frame, depth_tolerance=config.depth_tolerance, border=config.border,
                                          spacing=spacing, render_width=config.render_width,
                                          max_splat_radius=config.max_splat_radius)
        return frame, encode(frame)

    cache = _EncodingCache(encode_frame, config.cache_bytes if config.fusion == "consensus" else 0)
    counts = torch.zeros(n, dtype=torch.int32)
    scale = config.logit_scale if config.logit_scale is not None else logit_scale
    dim: int | None = None
    acc = torch.zeros(0)  # (N, D) running sum, mean fusion only
    if config.fusion == "consensus":
        if text_embeddings is None:
            raise ValueError("consensus fusion needs text_embeddings (the vocabulary)")
        text = torch.nn.functional.normalize(text_embeddings.to(torch.float32), dim=1)
        C, k = text.shape[0], config.top_views
        logit_sum = torch.zeros(n, C)
        # top[j][p, c]: the j-th best (logit, frame) key of point p for class c (k x N x C int64, descending)
        top = [torch.full((n, C), _EMPTY_KEY) for _ in range(k)]
    for i in tqdm(sel, desc="lifting" if config.fusion == "mean" else "lifting 1/2", disable=not progress,
                  unit="frame"):
        size, ff = cache.get(i)
        vis = vis_cache[i]
        if dim is None:
            dim = ff.dim
            if config.fusion == "mean":
                acc = torch.zeros(n, dim)
        if ff.dim != dim:
            raise InputError(f"frame {frames.names[i]}: encoder returned {ff.dim}-d features, expected {dim}")
        if config.fusion == "mean":
            for part in row_chunks(len(vis.index)):       # bounded gathers: (rows, D) stays in cache
                f, valid = ff.gather(vis.pixels[part], size)
                idx = vis.index[part]
                if not bool(valid.all()):
                    idx, f = idx[valid], f[valid]
                counts[idx] += 1
                acc.index_add_(0, idx, f)
            continue
        if ff.dim != text.shape[1]:
            raise ValueError(f"features are {ff.dim}-d but the text embeddings are {text.shape[1]}-d")
        logits, valid = ff.gather_logits(vis.pixels, size, text, scale)              # (M, C)
        idx = vis.index
        if not bool(valid.all()):
            idx, logits = idx[valid], logits[valid]
        counts[idx] += 1
        logit_sum.index_add_(0, idx, logits)
        x = _score_keys(logits, i)
        for j, level in enumerate(top):                                           # insertion into sorted lists
            cur = level.index_select(0, idx)
            level.index_copy_(0, idx, torch.maximum(cur, x))
            if j + 1 < k:
                x = torch.minimum(cur, x)
    seen = counts > 0
    if dim is None:
        raise InputError("no frame produced features")
    if config.fusion == "mean":
        features = acc / counts.clamp_min(1)[:, None].to(acc.dtype)
    else:
        consensus = (logit_sum / counts.clamp_min(1)[:, None]).argmax(1, keepdim=True)
        sel_s, sel_f = _decode_keys(torch.cat([level.gather(1, consensus) for level in top], 1))   # (N, k)
        del top, logit_sum
        weights = torch.softmax(sel_s, dim=1).nan_to_num(0.0)                     # -inf slots -> 0
        features = torch.zeros(n, dim)
        needed = [i for i in torch.unique(sel_f[seen]).tolist() if i >= 0]
        for i in tqdm(needed, desc="lifting 2/2", disable=not progress, unit="frame"):
            size, ff = cache.get(i)
            vis = vis_cache[i]
            slot_hit = sel_f.index_select(0, vis.index) == i                      # (M, k)
            use = torch.nonzero(slot_hit.any(1)).flatten()                        # points choosing this view
            for part in row_chunks(len(use)):
                rows = use[part]
                idx = vis.index[rows]
                f, valid = ff.gather(vis.pixels[rows], size)
                w = (weights[idx] * slot_hit[rows]).sum(1) * valid
                w /= torch.linalg.vector_norm(f, dim=1).clamp_min(1e-12)          # features are L2-normalised
                features.index_add_(0, idx, f * w[:, None])
    if config.fill_unseen:
        features = fill_from_nearest(coords, features, seen, inplace=True)
    log.info("lifted %d-d features: %d of %d points seen (%.1f%%), %.1f views per seen point",
             features.shape[1], int(seen.sum()), n, 100 * float(seen.float().mean()),
             float(counts[seen].float().mean()) if bool(seen.any()) else 0.0)
    meta = {"lift": asdict(config), "frames": len(sel), **(settings or {})}
    return LiftedFeatures(features.to(torch.float32).contiguous(), seen, counts, encoder_name, meta)


def lift_scan(scene: Scene, frames: Frames | None, encoder: str, *, model: str | os.PathLike[str] | None = None,
              vocabulary: list[str] | None = None, text_encoder: str | None = None,
              text_model: str | os.PathLike[str] | None = None, config: LiftConfig = LiftConfig(),
              progress: bool = True) -> LiftedFeatures:
    """Lift features with a named encoder (what ``geopurify lift`` runs).

    Args:
        encoder: ``clip-hf`` (``model`` = model folder), ``precomputed`` (``model`` = feature folder),
            ``masks`` (``model`` = mask folder), ``openscene`` (``model`` = fused-feature file), or an
            entry-point encoder.
        vocabulary: class names; consensus fusion scores views against them.
        text_encoder: embeds the vocabulary (and mask class names); default: the encoder's own text
            tower for ``clip-hf``, ``minilm`` for ``masks``; ``text_model`` is its folder if needed.
    """
    from .encoders import encode_vocabulary, get_encoder, get_text_encoder

    if encoder == "openscene":
        from .encoders.openscene import import_openscene
        if model is None:
            raise InputError("the openscene encoder needs --model <fused feature .pt file>")
        return import_openscene(model, scene, fill_unseen=config.fill_unseen)
    if frames is None or len(frames) == 0:
        raise InputError(f"scene {scene.name} has no frames to lift features from")
    text = None
    if encoder == "clip-hf":
        if model is None:
            raise InputError("the clip-hf encoder needs --model <CLIP folder in Hugging Face format>")
        enc = get_encoder("clip-hf", model=model)
        text_enc = enc if text_encoder in (None, "clip-hf") else get_text_encoder(text_encoder, model_dir=text_model)
    else:
        text_name = text_encoder or ("minilm" if encoder == "masks" else None)
        text_enc = None if text_name is None else get_text_encoder(
            text_name, **({"model": text_model} if text_name == "clip-hf" else {"model_dir": text_model}))
        opts: dict = {"folder": model} if encoder in ("precomputed", "masks") else {"model": model}
        if encoder == "masks":
            opts["text_encoder"] = text_enc
        enc = get_encoder(encoder, **opts)
    if config.fusion == "consensus":
        if not vocabulary:
            raise InputError("consensus fusion needs a vocabulary (--vocab)")
        if text_enc is None:
            raise InputError(f"consensus fusion with the {encoder} encoder needs --text-encoder to embed the "
                             "vocabulary in the features' space (or use --fusion mean)")
        text = encode_vocabulary(text_enc, vocabulary)
    settings = {"model": None if model is None else str(model), "vocabulary": vocabulary,
                "text_encoder": getattr(text_enc, "name", None)}
    return lift_features(scene, frames, enc.encode_frame, config=config, text_embeddings=text,
                         logit_scale=enc.logit_scale, encoder_name=encoder, settings=settings, progress=progress)
