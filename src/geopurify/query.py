"""Open-vocabulary queries on a scene: the :class:`Segmenter` façade.

Set a scene once (lifted features, and optionally a student for Geometry-Guided Pooling), then ask
any number of vocabularies or free-text queries::

    seg = Segmenter(text_encoder=get_text_encoder("minilm"))
    seg.set_scene(scene, lifted, student)              # voxelise, embed, build the affinity graph
    result = seg.query(["chair", "table", "sofa"])     # per-point scores (N, 3) and labels (N,)
    heat = seg.heatmap("somewhere to sit")             # (N,) in [0, 1]

Scores are cosine similarities between a point's (pooled) feature and the unit text embeddings.
With ``fast=True`` (default) and purification on, the ``(M, C)`` logits are pooled instead of the
``(M, D)`` features (exactly the same argmax, see :mod:`geopurify.pooling`); the scores are then the
pooled dot products, not cosines. Rejection into "other" (``other_threshold``) needs cosines, so it
uses the feature path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .encoders import DEFAULT_TEMPLATE, TextEncoder, encode_vocabulary
from .errors import InputError
from .geometry import VoxelGrid, voxelize
from .lifting import LiftedFeatures
from .pooling import PoolingConfig, affinity_matrix, affinity_weights, knn_graph, propagate
from .scene import Scene
from .student import StudentAffinityNet


@dataclass(frozen=True, eq=False)
class QueryResult:
    """``scores (N, C) float32``, ``labels (N,) int64`` (index into ``class_names``; -1 = "other"),
    and whether the features were purified."""

    class_names: list[str]
    scores: torch.Tensor
    labels: torch.Tensor
    purified: bool


class Segmenter:
    """Per-scene open-vocabulary segmentation (module docstring).

    Args:
        text_encoder: embeds vocabularies given as strings (not needed with ``text_embeddings=``).
        pooling: Geometry-Guided Pooling settings (K=96, sharpen 20, T=19 by default).
        template: prompt template for CLIP-family text towers (``encode_vocabulary``).
        device: where pooling runs.
    """

    def __init__(self, text_encoder: TextEncoder | None = None, pooling: PoolingConfig | None = None,
                 template: str | None = DEFAULT_TEMPLATE, device: str | torch.device = "cpu") -> None:
        self.text_encoder = text_encoder
        self.pooling = pooling or PoolingConfig()
        self.template = template
        self.device = torch.device(device)
        self._scene: Scene | None = None

    # -- scene state -------------------------------------------------------------------------
    def set_scene(self, scene: Scene, lifted: LiftedFeatures | torch.Tensor,
                  student: StudentAffinityNet | None = None, *, embeddings: torch.Tensor | None = None) -> None:
        """Prepare a scene: voxel grid, initial voxel features and, for purification, the affinity
        matrix from ``student`` (or from given per-voxel ``embeddings``; neither: uniform weights over
        the K nearest voxels, i.e. plain spatial smoothing)."""
        feats = lifted.features if isinstance(lifted, LiftedFeatures) else lifted
        if feats.dim() != 2 or feats.shape[0] != scene.num_points:
            raise InputError(f"features of shape {tuple(feats.shape)} do not fit scene {scene.name!r} "
                             f"with {scene.num_points} points")
        self._scene = scene
        self._features = feats.float()
        grid = voxelize(scene.coords, self.pooling.voxel_size)
        self.grid: VoxelGrid = grid
        self._x0 = grid.to_voxels(self._features).to(self.device)
        self._pooled: torch.Tensor | None = None
        nb = knn_graph(grid.centers, self.pooling.k).to(self.device)
        if student is not None:
            embeddings = student.embed(grid, self._features, scene.colors, scene.normals)
        if embeddings is not None:
            if embeddings.shape[0] != grid.num_voxels:
                raise InputError(f"embeddings have {embeddings.shape[0]} rows, the scene has {grid.num_voxels} voxels")
            w = affinity_weights(embeddings.to(self.device), nb, self.pooling.sharpen)
        else:
            w = torch.full(nb.shape, 1.0 / max(1, nb.shape[1]), device=self.device)
        self.neighbors, self.weights = nb, w
        self.matrix = affinity_matrix(nb, w)

    def _require_scene(self) -> Scene:
        if self._scene is None:
            raise RuntimeError("call set_scene() first")
        return self._scene

    def pooled_features(self) -> torch.Tensor:
        """``(N, D)`` purified point features (computed once per scene, then reused)."""
        self._require_scene()
        if self._pooled is None:
            p = self.pooling
            self._pooled = propagate(self.matrix, self._x0, p.steps, p.alpha).cpu()
        return self.grid.to_points(self._pooled)

    # -- queries -----------------------------------------------------------------------------
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        if self.text_encoder is None:
            raise InputError("this Segmenter has no text encoder: pass text_embeddings=")
        return encode_vocabulary(self.text_encoder, texts, self.template)

    def query(self, texts: list[str] | None = None, *, text_embeddings: torch.Tensor | None = None,
              purify: bool = True, fast: bool = True, other_threshold: float | None = None) -> QueryResult:
        """Label every point with the best of ``texts`` (or of given unit ``text_embeddings (C, D)``).

        Args:
            purify: pool with the scene's affinities first; ``False`` is the direct-projection baseline.
            fast: pool the logits instead of the features when that gives the same labels.
            other_threshold: points whose best cosine is below it get label -1 ("other").
        """
        self._require_scene()
        if text_embeddings is None:
            if texts is None:
                raise InputError("query() needs texts or text_embeddings")
            text_embeddings = self.embed_texts(texts)
        names = list(texts) if texts is not None else [str(i) for i in range(len(text_embeddings))]
        t = torch.nn.functional.normalize(text_embeddings.float(), dim=1)
        if t.shape[1] != self._features.shape[1]:
            raise InputError(f"text embeddings are {t.shape[1]}-d but the lifted features are "
                             f"{self._features.shape[1]}-d: use the text encoder that matches the 2D encoder")
        if purify and fast and other_threshold is None:
            p = self.pooling
            logits = propagate(self.matrix, self._x0 @ t.to(self.device).T, p.steps, p.alpha).cpu()
            scores = self.grid.to_points(logits)
        else:
            f = self.pooled_features() if purify else self._features
            scores = torch.nn.functional.normalize(f, dim=1) @ t.T
        labels = scores.argmax(1)
        if other_threshold is not None:
            labels = torch.where(scores.max(1).values >= other_threshold, labels, torch.full_like(labels, -1))
        return QueryResult(names, scores, labels, purify)

    def heatmap(self, text: str | None = None, *, text_embedding: torch.Tensor | None = None,
                purify: bool = True) -> torch.Tensor:
        """``(N,)`` relevance of one free-text query, the cosine rescaled to [0, 1] over the scene."""
        emb = text_embedding.reshape(1, -1) if text_embedding is not None else None
        r = self.query(None if text is None else [text], text_embeddings=emb, purify=purify, fast=False)
        s = r.scores[:, 0]
        return (s - s.min()) / (s.max() - s.min()).clamp_min(1e-12)
