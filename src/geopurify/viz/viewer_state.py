"""What the live viewer shows and does, without a browser: layers, legends, queries, picking, exports.

:class:`ViewerState` holds one scan prepared in a :class:`~geopurify.segment.Segmenter` (pooled features
cached, so each free-text query is one matrix product). The viser page (:mod:`geopurify.viz.viewer`) only
calls these methods; tests call them directly.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from .._fileio import atomic_paths, output_path, safe_name
from ..errors import InputError
from ..io.scene import Scene
from ..labels import get_label_set, resolve_vocabulary
from ..segment import QueryResult, Segmenter
from .colors import heat_colors, label_colors, label_legend
from .export import write_heat_ply, write_label_ply

log = logging.getLogger(__name__)
HEATMAP = "heatmap"


class ViewerState:
    """One scan in the viewer.

    Args:
        scene: the scan's points (colours; ground truth when labelled).
        segmenter: prepared with :meth:`Segmenter.set_scan` on ``scene``.
        out: folder the exports write into.
        vocabulary: class names of the direct / purified layers (default: the scan's label set's
            evaluated classes, else ScanNet20's).
        purify: also show the purified layer.
    """

    def __init__(self, scene: Scene, segmenter: Segmenter, out: str | os.PathLike[str], *,
                 vocabulary: list[str] | None = None, purify: bool = True) -> None:
        if len(segmenter.grid.inverse) != scene.num_points:
            raise InputError(f"the segmenter holds {len(segmenter.grid.inverse)} points, scene {scene.name!r} has "
                             f"{scene.num_points}")
        self.scene, self.segmenter, self.out, self.purify = scene, segmenter, Path(out), purify
        self.coords = scene.coords.numpy().astype(np.float32)
        self.layers: dict[str, np.ndarray] = {"colour": (scene.colors.numpy() * 255).round().astype(np.uint8)}
        if scene.labels is not None and scene.label_set is not None:
            self.layers["ground truth"] = label_colors(scene.labels, scene.label_set.num_classes)
        self.results: dict[str, QueryResult] = {}
        self.heat: np.ndarray | None = None
        self.query_text = ""
        default = scene.label_set or get_label_set("scannet20")
        self.set_vocabulary(vocabulary if vocabulary is not None else resolve_vocabulary(default.name))

    @property
    def methods(self) -> list[str]:
        return ["direct", "purified"] if self.purify else ["direct"]

    def set_vocabulary(self, vocabulary: list[str] | str) -> list[str]:
        """Relabel the direct (and purified) layers with ``vocabulary`` (names, or ``"a, b, c"``)."""
        names = [v.strip() for v in vocabulary.split(",")] if isinstance(vocabulary, str) else list(vocabulary)
        names = [n for n in names if n]
        if not names:
            raise InputError("the vocabulary is empty: give comma-separated class names")
        self.vocabulary = names
        for m in self.methods:
            r = self.segmenter.query(names, purify=m == "purified")
            self.results[m] = r
            self.layers[m] = label_colors(r.labels, len(names))
        return names

    def query(self, text: str) -> np.ndarray:
        """``(N,) float32`` relevance in [0, 1] of a free-text query; it becomes the ``heatmap`` layer."""
        text = text.strip()
        if not text:
            raise InputError("the query is empty")
        heat = self.segmenter.heatmap(text, purify=self.purify).numpy().astype(np.float32)
        self.heat, self.query_text = heat, text
        self.layers[HEATMAP] = heat_colors(heat)
        return heat

    def legend(self, layer: str) -> list[tuple[str, tuple[int, int, int]]]:
        """Class names and colours of a label layer (the classes it shows), empty for colour and heatmap."""
        if layer == "ground truth":
            return label_legend(self.scene.labels, self.scene.label_set.class_names)
        if layer in self.results:
            return label_legend(self.results[layer].labels, self.vocabulary)
        return []

    def visible(self, layer: str, threshold: float = 0.0) -> np.ndarray:
        """``(N,) bool`` points shown: on the heatmap, those with relevance at least ``threshold``."""
        if layer == HEATMAP and self.heat is not None:
            return self.heat >= threshold
        return np.ones(len(self.coords), dtype=bool)

    def subsample(self, max_points: int, seed: int = 0) -> np.ndarray:
        """Sorted indices of at most ``max_points`` points (a fixed random subset, the same every call)."""
        n = len(self.coords)
        if max_points >= n:
            return np.arange(n)
        return np.sort(np.random.default_rng(seed).permutation(n)[:max_points])

    def pick(self, origin: np.ndarray, direction: np.ndarray, radius: float = 0.05) -> int | None:
        """The point nearest the camera among those within ``radius`` metres of a click's ray (None: none)."""
        o, d = np.asarray(origin, np.float64), np.asarray(direction, np.float64)
        d = d / max(np.linalg.norm(d), 1e-12)
        rel = self.coords - o
        along = rel @ d
        off = np.linalg.norm(rel - along[:, None] * d, axis=1)
        near = np.nonzero((off <= radius) & (along > 0))[0]
        return None if len(near) == 0 else int(near[np.argmin(along[near])])

    def top_classes(self, index: int, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` best classes of the vocabulary at a point and their cosines (purified when shown)."""
        scores = self.results[self.methods[-1]].scores[index]
        vals, idx = torch.topk(scores, min(k, len(scores)))
        return [(self.vocabulary[i], float(v)) for i, v in zip(idx.tolist(), vals)]

    def export(self, layer: str) -> list[Path]:
        """Write the layer into the output folder: labels ``.npy`` + coloured ``.ply`` (direct, purified),
        relevance ``.npy`` + heat ``.ply`` (heatmap); both files move into place together."""
        stem = safe_name(f"{self.scene.name}_{layer}" + (f"_{self.query_text}" if layer == HEATMAP else ""))[:90]
        if layer == HEATMAP:
            if self.heat is None:
                raise InputError("no heatmap yet: type a query first")
            values = self.heat
        elif layer in self.results:
            values = self.results[layer].labels.numpy().astype(np.int64)
        else:
            raise InputError(f"layer {layer!r} cannot be exported; export one of {[*self.methods, HEATMAP]}")
        npy, ply = output_path(self.out, f"{stem}.npy"), output_path(self.out, f"{stem}.ply")
        with atomic_paths(npy, ply) as (t_npy, t_ply):
            with open(t_npy, "wb") as fh:
                np.save(fh, values)
            if layer == HEATMAP:
                write_heat_ply(t_ply, self.coords, values)
            else:
                write_label_ply(t_ply, self.coords, values, len(self.vocabulary))
        log.info("exported %s to %s", layer, npy.parent)
        return [npy, ply]
