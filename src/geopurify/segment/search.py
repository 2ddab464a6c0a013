"""Where a free-text query is: the most relevant points of a heatmap and the box around them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError


@dataclass(frozen=True)
class QueryHits:
    """The ``k`` most relevant points of one query.

    Attributes:
        text: the query.
        indices: ``(k,) int64`` point indices, most relevant first.
        scores: ``(k,) float32`` their relevance in [0, 1].
        box_min: ``(3,)`` corner of the axis-aligned box around them, metres.
        box_max: ``(3,)`` the opposite corner, metres.
    """

    text: str
    indices: torch.Tensor
    scores: torch.Tensor
    box_min: torch.Tensor
    box_max: torch.Tensor

    def to_dict(self, coords: torch.Tensor) -> dict[str, object]:
        """JSON-ready: the query, the box and each top point's index, score and ``xyz`` (``coords (N, 3)``)."""
        return {"query": self.text, "top_k": int(len(self.indices)),
                "bounding_box": {"min": self.box_min.tolist(), "max": self.box_max.tolist()},
                "points": [{"index": int(i), "score": round(float(s), 6), "xyz": [round(float(v), 5) for v in coords[i]]}
                           for i, s in zip(self.indices, self.scores)]}


def top_points(text: str, heat: torch.Tensor, coords: torch.Tensor, k: int = 100) -> QueryHits:
    """The ``k`` points of ``heat (N,)`` with the highest relevance and their box in ``coords (N, 3)``, metres."""
    if k < 1:
        raise InputError(f"top-k must be at least 1, got {k}")
    if heat.shape != (len(coords),):
        raise InputError(f"a heatmap of shape {tuple(heat.shape)} does not fit {len(coords)} points")
    vals, idx = torch.topk(heat.float(), min(k, len(heat)))
    pts = coords[idx].float()
    return QueryHits(text, idx, vals, pts.min(0).values, pts.max(0).values)
