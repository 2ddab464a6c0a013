"""Multi-view fusion of per-view point features, one class per strategy, streamed over frames.

Each strategy is fed frames with :meth:`add` (and, for two-pass strategies, the frames that
:meth:`revisit` names a second time with :meth:`add_again`), then :meth:`finish` gives the fused
``(N, D)`` features and the per-point view counts. Accumulators are per point only.

* ``mean`` (:class:`MeanFusion`, OpenScene): the average of the raw features over the views that see a point.
* ``consensus`` (:class:`ConsensusFusion`, GeoPurify): per-view features are L2-normalised and scored
  against the vocabulary, ``logits_v = s * f_v . t_c``; the consensus class ``c*`` maximises the mean
  logit over views; the fused feature is ``sum_v softmax(logits_v[c*]) f_v`` over the ``min(M, k)``
  views with the highest ``logits_v[c*]`` (``k = 3``, no renormalisation). Pass one keeps, per point and
  class, a running top-k of (logit, frame); pass two re-reads only the chosen views' features.
"""

from __future__ import annotations

from typing import Protocol

import torch

from ..encoders.maps import FrameFeatures, row_chunks
from ..errors import InputError
from .visibility import Visibility


class Fusion(Protocol):
    """The interface the lifting loop drives (module docstring). Built as
    ``cls(num_points, text=..., scale=..., top_views=...)``; ``needs_text``: it scores views against a
    vocabulary; ``two_pass``: it reads frames again (so their encoder outputs are worth caching)."""

    needs_text: bool
    two_pass: bool

    def add(self, frame: int, vis: Visibility, feats: FrameFeatures, size: tuple[int, int]) -> None: ...

    def revisit(self) -> list[int]: ...

    def add_again(self, frame: int, vis: Visibility, feats: FrameFeatures, size: tuple[int, int]) -> None: ...

    def finish(self) -> tuple[torch.Tensor, torch.Tensor]: ...


class _Base:
    needs_text = False
    two_pass = False

    def __init__(self, num_points: int) -> None:
        self.n = num_points
        self.counts = torch.zeros(num_points, dtype=torch.int32)
        self.dim: int | None = None

    def _check_dim(self, frame: int, feats: FrameFeatures) -> None:
        if self.dim is None:
            self.dim = feats.dim
            self._start(feats.dim)
        elif feats.dim != self.dim:
            raise InputError(f"frame {frame}: the encoder returned {feats.dim}-d features, expected {self.dim}")

    def _start(self, dim: int) -> None:
        pass

    def _dim(self) -> int:
        if self.dim is None:
            raise InputError("no frame produced features")
        return self.dim

    def revisit(self) -> list[int]:
        return []

    def add_again(self, frame: int, vis: Visibility, feats: FrameFeatures, size: tuple[int, int]) -> None:
        raise RuntimeError(f"{type(self).__name__} reads each frame once")


class MeanFusion(_Base):
    """Running sum and count per point (module docstring); takes no vocabulary."""

    def __init__(self, num_points: int, **_: object) -> None:
        super().__init__(num_points)

    def _start(self, dim: int) -> None:
        self.acc = torch.zeros(self.n, dim)

    def add(self, frame: int, vis: Visibility, feats: FrameFeatures, size: tuple[int, int]) -> None:
        self._check_dim(frame, feats)
        for part in row_chunks(len(vis.index)):       # bounded gathers: (rows, D) stays in cache
            f, valid = feats.gather(vis.pixels[part], size)
            idx = vis.index[part]
            if not bool(valid.all()):
                idx, f = idx[valid], f[valid]
            self.counts[idx] += 1
            self.acc.index_add_(0, idx, f)

    def finish(self) -> tuple[torch.Tensor, torch.Tensor]:
        self._dim()
        return self.acc.div_(self.counts.clamp_min(1)[:, None].to(self.acc.dtype)), self.counts


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


class ConsensusFusion(_Base):
    """GeoPurify's consensus fusion (module docstring).

    Args:
        num_points: N.
        text: ``(C, D)`` vocabulary embeddings (normalised here).
        scale: the logit scale ``s``.
        top_views: k.

    Memory: the logit sums ``(N, C)`` float32 and running top-k keys ``k x (N, C)`` int64
    (72 MB for 150k points, 20 classes, k=3), then the ``(N, D)`` result.
    """

    needs_text = True
    two_pass = True

    def __init__(self, num_points: int, *, text: torch.Tensor, scale: float, top_views: int = 3) -> None:
        super().__init__(num_points)
        self.text = torch.nn.functional.normalize(text.to(torch.float32), dim=1)
        self.scale, self.k = scale, top_views
        C = self.text.shape[0]
        self.logit_sum = torch.zeros(num_points, C)
        # top[j][p, c]: the j-th best (logit, frame) key of point p for class c (descending)
        self.top = [torch.full((num_points, C), _EMPTY_KEY) for _ in range(top_views)]
        self.features: torch.Tensor | None = None

    def add(self, frame: int, vis: Visibility, feats: FrameFeatures, size: tuple[int, int]) -> None:
        self._check_dim(frame, feats)
        if feats.dim != self.text.shape[1]:
            raise InputError(f"features are {feats.dim}-d but the text embeddings are {self.text.shape[1]}-d")
        logits, valid = feats.gather_logits(vis.pixels, size, self.text, self.scale)    # (M, C)
        idx = vis.index
        if not bool(valid.all()):
            idx, logits = idx[valid], logits[valid]
        self.counts[idx] += 1
        self.logit_sum.index_add_(0, idx, logits)
        x = _score_keys(logits, frame)
        for j, level in enumerate(self.top):                                 # insertion into sorted lists
            cur = level.index_select(0, idx)
            level.index_copy_(0, idx, torch.maximum(cur, x))
            if j + 1 < self.k:
                x = torch.minimum(cur, x)

    def revisit(self) -> list[int]:
        """Choose each point's views (consensus class, top-k, softmax weights); the frames to read again."""
        dim = self._dim()
        seen = self.counts > 0
        consensus = (self.logit_sum / self.counts.clamp_min(1)[:, None]).argmax(1, keepdim=True)
        scores, self.chosen = _decode_keys(torch.cat([level.gather(1, consensus) for level in self.top], 1))  # (N, k)
        del self.top, self.logit_sum
        self.weights = torch.softmax(scores, dim=1).nan_to_num(0.0)                 # -inf slots -> 0
        self.features = torch.zeros(self.n, dim)
        return [i for i in torch.unique(self.chosen[seen]).tolist() if i >= 0]

    def add_again(self, frame: int, vis: Visibility, feats: FrameFeatures, size: tuple[int, int]) -> None:
        if self.features is None:
            raise RuntimeError("call revisit() after the first pass")
        slot_hit = self.chosen.index_select(0, vis.index) == frame                  # (M, k)
        use = torch.nonzero(slot_hit.any(1)).flatten()                             # points choosing this view
        for part in row_chunks(len(use)):
            rows = use[part]
            idx = vis.index[rows]
            f, valid = feats.gather(vis.pixels[rows], size)
            w = (self.weights[idx] * slot_hit[rows]).sum(1) * valid
            w /= torch.linalg.vector_norm(f, dim=1).clamp_min(1e-12)               # features are L2-normalised
            self.features.index_add_(0, idx, f * w[:, None])

    def finish(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.features is None:
            raise RuntimeError("call revisit() and add_again() first")
        return self.features, self.counts


FUSIONS: dict[str, type[Fusion]] = {"mean": MeanFusion, "consensus": ConsensusFusion}
"""The fusion strategies by the name :class:`~geopurify.lifting.LiftConfig` takes."""
