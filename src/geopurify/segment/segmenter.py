"""Open-vocabulary queries on a scan: the :class:`Segmenter` façade.

Set a scan once (lift with the encoder, or give lifted features; embed with the student; build the
affinity graph), then ask any number of vocabularies or free-text queries::

    seg = Segmenter.from_checkpoint("runs/a/best.pt", encoder=get_encoder("clip-hf", source="my-clip/"))
    seg.set_scan(load_scan("scans/scene0011_00"), vocabulary=["chair", "table", "sofa"])
    result = seg.query(["chair", "table", "sofa"])     # labels (N,), scores (N, 3) cosines
    heat = seg.heatmap("somewhere to sit")             # (N,) in [0, 1]

``QueryResult.scores`` are always cosine similarities between a point's (pooled) feature and the unit
text embeddings; pooled features are computed once per scan and reused. With ``fast=True`` the ``(M, C)``
logits are pooled instead of the ``(M, D)`` features, exactly the same labels at C/D of the work
(:mod:`geopurify.segment.pooling`); those pooled dot products are ``QueryResult.logits`` and ``scores``
is then None. The voxel size is the student's (its checkpoint's); without a student, ``voxel_size``.

Consensus-lifted features depend on the vocabulary they were lifted with: a query with other classes
logs a warning (``vocabulary_check="error"`` refuses it, ``"off"`` stays silent).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import torch

from .._validate import all_finite
from ..encoders import ImageEncoder, TextEncoder, encode_vocabulary
from ..errors import InputError
from ..geometry import VoxelGrid, voxelize
from ..io.layouts import Scan
from ..io.scene import Scene
from ..lifting.fusion import FUSIONS
from ..lifting.lift import LiftConfig, lift_scan
from ..lifting.lifted import FeatureSource, LiftedFeatures
from ..student.checkpoint import load_student
from ..student.network import StudentAffinityNet
from .pooling import PoolingConfig, affinity_matrix, affinity_weights, knn_graph, propagate

log = logging.getLogger(__name__)
VOCABULARY_CHECKS = ("warn", "error", "off")


@dataclass(frozen=True, eq=False)
class QueryResult:
    """The answer to one vocabulary.

    Attributes:
        class_names: the vocabulary, ``C`` names.
        labels: ``(N,) int64`` index into ``class_names`` (-1 = "other").
        scores: ``(N, C) float32`` cosine similarities, or None when the logits were pooled (``fast``).
        logits: ``(N, C) float32`` pooled dot products ``(A^T X0) . t_c`` (``fast``), else None.
        purified: whether the features were pooled.
    """

    class_names: list[str]
    labels: torch.Tensor
    scores: torch.Tensor | None
    logits: torch.Tensor | None
    purified: bool


class Segmenter:
    """Per-scan open-vocabulary segmentation (module docstring).

    Args:
        student: the Student Affinity Network (None: uniform weights over the K nearest voxels).
        encoder: the 2D encoder that :meth:`set_scan` lifts with when no features are given.
        text_encoder: embeds vocabularies given as strings; default: the encoder's own.
        pooling: Geometry-Guided Pooling settings (K=96, sharpen 20, T=19 by default).
        lift: lifting settings for :meth:`set_scan`.
        voxel_size: voxel edge in metres when there is no student (a student brings its own).
        template: prompt template; default: the text encoder's own.
        vocabulary_check: ``warn`` / ``error`` / ``off`` for queries outside the lift vocabulary.
        device: where embedding and pooling run.
    """

    def __init__(self, student: StudentAffinityNet | None = None, *, encoder: ImageEncoder | None = None,
                 text_encoder: TextEncoder | None = None, pooling: PoolingConfig | None = None,
                 lift: LiftConfig | None = None, voxel_size: float | None = None, template: str | None = None,
                 vocabulary_check: str = "warn", device: str | torch.device = "cpu") -> None:
        if vocabulary_check not in VOCABULARY_CHECKS:
            raise ValueError(f"vocabulary_check must be one of {VOCABULARY_CHECKS}, got {vocabulary_check!r}")
        if student is not None and voxel_size is not None and abs(voxel_size - student.voxel_size) > 1e-9:
            raise InputError(f"the student was trained on {student.voxel_size * 100:g} cm voxels; it cannot run on "
                             f"{voxel_size * 100:g} cm voxels")
        self.student, self.encoder = student, encoder
        self.text_encoder = text_encoder if text_encoder is not None else getattr(encoder, "text_encoder", None)
        self.pooling = pooling or PoolingConfig()
        self.lift = lift or LiftConfig()
        self.voxel_size = student.voxel_size if student is not None else (voxel_size or 0.02)
        self.template, self.vocabulary_check = template, vocabulary_check
        self.device = torch.device(device)
        self._scene: Scene | None = None
        self._warned: set[tuple[str, ...]] = set()

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], *, device: str | torch.device = "cpu",
                        **options: object) -> Segmenter:
        """A Segmenter with the student of a checkpoint (``best.pt``); ``options`` as the constructor's."""
        return cls(load_student(path, device=device), device=device, **options)  # type: ignore[arg-type]

    # -- scan state --------------------------------------------------------------------------
    def set_scan(self, scan: Scan, *, lifted: LiftedFeatures | None = None, vocabulary: list[str] | None = None,
                 progress: bool = False) -> LiftedFeatures:
        """Prepare a scan: lift its frames with the encoder (consensus fusion scores views against
        ``vocabulary``) unless ``lifted`` features are given, then embed and build the graph. Returns the
        lifted features."""
        if lifted is None:
            if self.encoder is None:
                raise InputError("this Segmenter has no encoder to lift with: pass lifted= or encoder=")
            lifted = lift_scan(scan.scene, scan.frames, self.encoder, vocabulary=vocabulary,
                               text_encoder=self.text_encoder, config=self.lift, progress=progress)
        self.set_scene(scan.scene, lifted)
        return lifted

    def set_scene(self, scene: Scene, lifted: LiftedFeatures | torch.Tensor,
                  student: StudentAffinityNet | None = None, *, embeddings: torch.Tensor | None = None) -> None:
        """Prepare a scene from its lifted features: voxel grid, initial voxel features and the affinity
        matrix from the student (``student`` replaces the Segmenter's for this scene), from given
        per-voxel ``embeddings``, or, with neither, uniform weights (plain spatial smoothing).

        Raises:
            InputError: features that do not fit the scene, or that the student was not trained on.
        """
        known = lifted if isinstance(lifted, LiftedFeatures) else None
        feats = known.features if known is not None else lifted
        if feats.dim() != 2 or feats.shape[0] != scene.num_points:
            raise InputError(f"features of shape {tuple(feats.shape)} do not fit scene {scene.name!r} "
                             f"with {scene.num_points} points")
        if known is not None:
            known.check_scene(scene)
        student = student if student is not None else self.student
        voxel_size = self.voxel_size
        if student is not None:
            voxel_size = student.voxel_size
            source = known.source if known is not None else FeatureSource("unknown", int(feats.shape[1]))
            student.features.check_matches(source, "the student")
        self._scene, self._lifted = scene, known
        self._features = feats.float()
        grid = voxelize(scene.coords, voxel_size)
        self.grid: VoxelGrid = grid
        self._x0 = grid.to_voxels(self._features).to(self.device)
        self._pooled: torch.Tensor | None = None
        self._pooled_unit: torch.Tensor | None = None
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
            raise RuntimeError("call set_scan() or set_scene() first")
        return self._scene

    def pooled_features(self) -> torch.Tensor:
        """``(N, D)`` purified point features (computed once per scene, then reused)."""
        return self.grid.to_points(self._voxel_pooled())

    def _voxel_pooled(self) -> torch.Tensor:
        self._require_scene()
        if self._pooled is None:
            p = self.pooling
            self._pooled = propagate(self.matrix, self._x0, p.steps, p.alpha).cpu()
        return self._pooled

    # -- queries -----------------------------------------------------------------------------
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """``(len(texts), D)`` unit embeddings with the text encoder (and its prompt template)."""
        if self.text_encoder is None:
            raise InputError("this Segmenter has no text encoder: pass text_embeddings=")
        return encode_vocabulary(self.text_encoder, texts, self.template)

    def _check_vocabulary(self, texts: list[str]) -> None:
        source = self._lifted.source if self._lifted is not None else None
        by_vocabulary = source is not None and source.fusion in FUSIONS and FUSIONS[source.fusion].needs_text
        if self.vocabulary_check == "off" or not by_vocabulary or not source.vocabulary:
            return
        extra = [t for t in texts if t not in source.vocabulary]
        if not extra:
            return
        msg = (f"the features were lifted by consensus over {len(source.vocabulary)} classes that do not include "
               f"{', '.join(map(repr, extra[:5]))}{'...' if len(extra) > 5 else ''}: lift again with this vocabulary "
               "for faithful results")
        if self.vocabulary_check == "error":
            raise InputError(msg)
        if tuple(extra) not in self._warned:
            self._warned.add(tuple(extra))
            log.warning(msg)

    def query(self, texts: list[str] | None = None, *, text_embeddings: torch.Tensor | None = None,
              purify: bool = True, fast: bool = False, other_threshold: float | None = None) -> QueryResult:
        """Label every point with the best of ``texts`` (or of given unit ``text_embeddings (C, D)``).

        Args:
            purify: pool with the scene's affinities first; ``False`` is the direct-projection baseline.
            fast: pool the ``(M, C)`` logits instead of the features (same labels, ``logits`` instead of
                ``scores``); ignored without purification or with ``other_threshold``.
            other_threshold: points whose best cosine is below it get label -1 ("other").
        """
        self._require_scene()
        if other_threshold is not None and not math.isfinite(other_threshold):
            raise InputError(f"other_threshold must be a finite cosine, got {other_threshold}")
        t = self._text(texts, text_embeddings)
        if texts is not None:
            self._check_vocabulary(list(texts))
        names = list(texts) if texts is not None else [str(i) for i in range(len(t))]
        if purify and fast and other_threshold is None:
            p = self.pooling
            logits = self.grid.to_points(propagate(self.matrix, self._x0 @ t.to(self.device).T, p.steps, p.alpha).cpu())
            return QueryResult(names, logits.argmax(1), None, logits, purify)
        scores = self._cosines(t, purify)
        labels = scores.argmax(1)
        if other_threshold is not None:
            labels = torch.where(scores.max(1).values >= other_threshold, labels, torch.full_like(labels, -1))
        return QueryResult(names, labels, scores, None, purify)

    def heatmap(self, text: str | None = None, *, text_embedding: torch.Tensor | None = None,
                purify: bool = True) -> torch.Tensor:
        """``(N,)`` relevance of one free-text query (any words: no vocabulary check), the cosine
        rescaled to [0, 1] over the scene."""
        emb = text_embedding.reshape(1, -1) if text_embedding is not None else None
        return self.heatmaps(None if text is None else [text], text_embeddings=emb, purify=purify)[0]

    def heatmaps(self, texts: list[str] | None = None, *, text_embeddings: torch.Tensor | None = None,
                 purify: bool = True) -> torch.Tensor:
        """``(Q, N)`` :meth:`heatmap` of many queries at once: one pooling per scene (cached), one
        text-encoder call, one matrix product."""
        self._require_scene()
        s = self._cosines(self._text(texts, text_embeddings), purify).T
        lo, hi = s.min(1, keepdim=True).values, s.max(1, keepdim=True).values
        return (s - lo) / (hi - lo).clamp_min(1e-12)

    def _text(self, texts: list[str] | None, text_embeddings: torch.Tensor | None) -> torch.Tensor:
        if text_embeddings is None:
            if texts is None:
                raise InputError("query() needs texts or text_embeddings")
            text_embeddings = self.embed_texts(texts)
        if text_embeddings.dim() != 2:
            raise InputError(f"text embeddings must be a (C, D) matrix, got {tuple(text_embeddings.shape)}")
        if not all_finite(text_embeddings.float()):
            raise InputError("text embeddings contain NaN or inf")
        zero = torch.nonzero(text_embeddings.float().norm(dim=1) == 0).flatten().tolist()
        if zero:
            raise InputError(f"text embeddings {zero[:5]} are zero vectors: they match nothing")
        t = torch.nn.functional.normalize(text_embeddings.float(), dim=1)
        if t.shape[1] != self._features.shape[1]:
            raise InputError(f"text embeddings are {t.shape[1]}-d but the lifted features are "
                             f"{self._features.shape[1]}-d: use the text encoder that matches the 2D encoder")
        return t

    def _cosines(self, t: torch.Tensor, purify: bool) -> torch.Tensor:
        if not purify:
            return torch.nn.functional.normalize(self._features, dim=1) @ t.T
        if self._pooled_unit is None:              # the points of a voxel share its pooled feature: score voxels
            self._pooled_unit = torch.nn.functional.normalize(self._voxel_pooled(), dim=1)
        return self.grid.to_points(self._pooled_unit @ t.T)
