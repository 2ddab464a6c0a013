"""Lifting 2D features onto 3D points: drive an encoder over a scan's frames, test visibility, fuse.

For every frame (every ``frame_step``-th), the points it sees are found (:mod:`.visibility`), the
encoder's feature map is read at their pixels and a fusion strategy accumulates them (:mod:`.fusion`).
Points that no frame sees take the feature of the nearest seen point; ``seen`` records which.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from .._validate import finite_fields
from ..encoders import ImageEncoder, TextEncoder, encode_vocabulary
from ..encoders.maps import FrameFeatures
from ..errors import InputError
from ..io.frames import Frame, Frames
from ..io.scene import Scene
from ..render import point_spacing
from .fusion import FUSIONS
from .lifted import LiftedFeatures, fill_from_nearest
from .visibility import Visibility, visible_points

log = logging.getLogger("geopurify.lifting")


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
        batch_frames: frames given to the encoder at once (one forward pass where the encoder has
            encode_frames, e.g. clip-hf and siglip); 1 encodes frame by frame. The result does not depend on it.
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
    batch_frames: int = 1

    def __post_init__(self) -> None:
        finite_fields(self)
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        if self.top_views < 1 or self.frame_step < 1 or self.border < 0 or self.depth_tolerance <= 0 \
                or self.batch_frames < 1:
            raise ValueError(f"invalid lifting settings: {self}")


class _EncodingCache:
    """Encoder outputs kept between the two consensus passes, within a byte budget.

    :meth:`walk` encodes the frames it is not holding ``batch`` at a time (``encode`` takes a list of frame
    indices); outputs beyond the budget live only until their frame has been used, so at most ``batch`` of
    them are in memory at once.
    """

    def __init__(self, encode: Callable[[list[int]], list[tuple[Frame, FrameFeatures]]], budget: int,
                 batch: int = 1) -> None:
        self.encode, self.budget, self.batch, self.used = encode, budget, batch, 0
        self.store: dict[int, tuple[tuple[int, int], FrameFeatures]] = {}

    def walk(self, order: list[int]) -> Iterator[tuple[int, tuple[int, int], FrameFeatures]]:
        """``(frame index, frame size, features)`` for the frames of ``order``, in that order."""
        pending: list[int] = []
        todo: list[int] = []
        for i in order:
            pending.append(i)
            if i not in self.store:
                todo.append(i)
            if len(todo) == self.batch:
                yield from self._flush(pending, todo)
                pending, todo = [], []
        yield from self._flush(pending, todo)

    def _flush(self, pending: list[int], todo: list[int]) -> Iterator[tuple[int, tuple[int, int], FrameFeatures]]:
        fresh = dict(zip(todo, self.encode(todo))) if todo else {}
        for i in pending:
            if i not in fresh:
                yield i, *self.store[i]
                continue
            frame, feats = fresh.pop(i)
            if self.used + feats.nbytes <= self.budget:
                self.store[i] = (frame.size, feats)
                self.used += feats.nbytes
            yield i, frame.size, feats


def lift_features(scene: Scene, frames: Frames, encode: Callable[[Frame], FrameFeatures], *,
                  encode_many: Callable[[list[Frame]], list[FrameFeatures]] | None = None,
                  config: LiftConfig = LiftConfig(), text_embeddings: torch.Tensor | None = None,
                  logit_scale: float = 100.0, encoder_name: str = "custom", settings: dict | None = None,
                  progress: bool = True) -> LiftedFeatures:
    """Lift per-frame 2D features onto the scene's points.

    Args:
        scene: the point cloud.
        frames: its posed frames (streamed; ``config.batch_frames`` frames' images in memory at a time).
        encode: maps a frame to its feature map (:mod:`geopurify.encoders.maps`), e.g. an encoder's
            ``encode_frame``.
        encode_many: maps a list of frames to their feature maps in one call (an encoder's
            ``encode_frames``), used for groups of ``config.batch_frames`` frames; default: ``encode``
            frame by frame.
        config: projection and fusion settings.
        text_embeddings: ``(C, D)`` vocabulary embeddings, required by consensus fusion.
        logit_scale: consensus logit scale when ``config.logit_scale`` is None.
        encoder_name, settings: recorded in the result.
    Returns:
        :class:`LiftedFeatures` for every point of ``scene``.

    Memory beyond the result ``(N, D)``: one frame's features, ``config.batch_frames`` frames' images and
    features when batched (plus up to ``config.cache_bytes`` of encoder outputs kept for the second
    consensus pass), each frame's visible points, and the fusion's accumulators
    (:class:`~geopurify.lifting.fusion.ConsensusFusion`).
    """
    sel = list(range(0, len(frames), config.frame_step))
    if not sel:
        raise InputError("no frames to lift from")
    coords = scene.coords.T.contiguous().T          # column-major: the projection reads one coordinate at a time
    n = scene.num_points
    spacing = point_spacing(coords) if not frames.has_depth else None
    vis_cache: dict[int, Visibility] = {}

    def encode_group(group: list[int]) -> list[tuple[Frame, FrameFeatures]]:
        batch = [frames[i] for i in group]
        for i, frame in zip(group, batch):
            if i not in vis_cache:
                vis_cache[i] = visible_points(coords, frame, depth_tolerance=config.depth_tolerance,
                                              border=config.border, spacing=spacing, render_width=config.render_width,
                                              max_splat_radius=config.max_splat_radius)
        feats = encode_many(batch) if encode_many is not None and len(batch) > 1 else [encode(f) for f in batch]
        if len(feats) != len(batch):
            raise RuntimeError(f"encode_many gave {len(feats)} feature maps for {len(batch)} frames")
        return list(zip(batch, feats))

    kind = FUSIONS[config.fusion]
    if kind.needs_text and text_embeddings is None:
        raise ValueError(f"{config.fusion} fusion needs text_embeddings (the vocabulary)")
    scale = config.logit_scale if config.logit_scale is not None else logit_scale
    fusion = kind(n, text=text_embeddings, scale=scale, top_views=config.top_views)
    cache = _EncodingCache(encode_group, config.cache_bytes if kind.two_pass else 0, config.batch_frames)
    for i, size, ff in tqdm(cache.walk(sel), desc="lifting 1/2" if kind.two_pass else "lifting", total=len(sel),
                            disable=not progress, unit="frame"):
        fusion.add(i, vis_cache[i], ff, size)
    again = fusion.revisit()
    for i, size, ff in tqdm(cache.walk(again), desc="lifting 2/2", total=len(again), disable=not progress,
                            unit="frame"):
        fusion.add_again(i, vis_cache[i], ff, size)
    features, counts = fusion.finish()
    seen = counts > 0
    if not bool(seen.any()):
        raise InputError(f"no frame sees any point of scene {scene.name!r} (check the poses and intrinsics, "
                         f"--border {config.border}, --depth-tolerance {config.depth_tolerance})")
    if config.fill_unseen:
        features = fill_from_nearest(scene.coords, features, seen, inplace=True)
    log.info("lifted %d-d features: %d of %d points seen (%.1f%%), %.1f views per seen point",
             features.shape[1], int(seen.sum()), n, 100 * float(seen.float().mean()),
             float(counts[seen].float().mean()))
    meta = {"lift": asdict(config), "frames": len(sel), "scene": scene.name, "fingerprint": scene.fingerprint,
            **(settings or {})}
    return LiftedFeatures(features.to(torch.float32).contiguous(), seen, counts, encoder_name, meta)


def lift_scan(scene: Scene, frames: Frames | None, encoder: ImageEncoder, *, vocabulary: list[str] | None = None,
              text_encoder: TextEncoder | None = None, config: LiftConfig = LiftConfig(),
              progress: bool = True) -> LiftedFeatures:
    """Lift features with an encoder (what ``geopurify lift`` runs).

    Args:
        encoder: an image encoder (:func:`~geopurify.encoders.get_encoder`).
        vocabulary: class names; consensus fusion scores views against them, and an encoder prompted per
            class (one with ``set_vocabulary``, e.g. ``sam3``) is given them before the first frame.
        text_encoder: embeds the vocabulary; default: the encoder's own ``text_encoder`` (CLIP's text
            tower for ``clip-hf``, the mask class names' encoder for ``masks``).
    Raises:
        InputError: no frames, or consensus fusion without a vocabulary or a text encoder.
    """
    if frames is None or len(frames) == 0:
        raise InputError(f"scene {scene.name} has no frames to lift features from")
    if vocabulary and callable(getattr(encoder, "set_vocabulary", None)):
        encoder.set_vocabulary(vocabulary)          # encoders prompted per class (sam3) score this vocabulary
    text_enc = text_encoder if text_encoder is not None else getattr(encoder, "text_encoder", None)
    text = None
    if FUSIONS[config.fusion].needs_text:
        if not vocabulary:
            raise InputError(f"{config.fusion} fusion needs a vocabulary (--vocab)")
        if text_enc is None:
            raise InputError(f"{config.fusion} fusion with the {encoder.name} encoder needs --text-encoder to embed the "
                             "vocabulary in the features' space (or use --fusion mean)")
        text = encode_vocabulary(text_enc, vocabulary)
    settings = {"source": getattr(encoder, "source", None), "vocabulary": vocabulary,
                "text_encoder": getattr(text_enc, "name", None)}
    many = getattr(encoder, "encode_frames", None)     # optional batched path (ImageEncoder's docstring)
    return lift_features(scene, frames, encoder.encode_frame, encode_many=many if callable(many) else None,
                         config=config, text_embeddings=text,
                         logit_scale=encoder.logit_scale, encoder_name=encoder.name, settings=settings,
                         progress=progress)
