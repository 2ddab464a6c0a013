"""Evaluation over scenes: direct projection vs purified, on all points and on the points frames saw.

Confusion matrices are accumulated over all scenes (:class:`~geopurify.evaluation.ConfusionMatrix`), then
scored over the label set's evaluated classes (ScanNet20: 19, otherfurniture excluded as upstream).
The vocabulary is the evaluated classes' names, in label-set order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch

from .._fileio import atomic_write_text
from ..errors import InputError
from ..io.scene import Scene
from ..labels import LabelSet
from ..lifting.lifted import LiftedFeatures
from ..segment.segmenter import Segmenter
from ..student.network import StudentAffinityNet
from .metrics import ConfusionMatrix, SegmentationScores

SUBSETS = ("all", "seen")


@dataclass
class Evaluation:
    """``matrices[method][subset]``: method in ``direct``/``purified``, subset in ``all``/``seen``."""

    label_set: LabelSet
    matrices: dict[str, dict[str, ConfusionMatrix]]
    scenes: list[str]

    def scores(self, method: str, subset: str = "all") -> SegmentationScores:
        return self.matrices[method][subset].summary(self.label_set)

    def to_dict(self) -> dict:
        return {"label_set": self.label_set.name, "scenes": self.scenes,
                "results": {m: {s: asdict(self.scores(m, s)) for s in d} for m, d in self.matrices.items()}}

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))

    def table(self) -> str:
        """Markdown: one row per method and subset (mIoU over the evaluated classes as upstream, mIoU over the
        classes present in the ground truth, mAcc, foreground mIoU/mAcc, in %), then per-class IoU with each
        class's ground-truth points ("absent": none, its IoU counts 0 in the upstream mIoU)."""
        lines = ["| method | points | mIoU | mIoU (present) | mAcc | f-mIoU | f-mAcc |", "|---|---|---|---|---|---|---|"]
        for m, d in self.matrices.items():
            for s in d:
                r, present = self.scores(m, s), d[s].summary(self.label_set, present_only=True)
                lines.append(f"| {m} | {s} | {100 * r.miou:.1f} | {100 * present.miou:.1f} | {100 * r.macc:.1f} | "
                             f"{100 * r.fg_miou:.1f} | {100 * r.fg_macc:.1f} |")
        methods = list(self.matrices)
        lines += ["", "| class | points | " + " | ".join(f"IoU {m}" for m in methods) + " |",
                  "|---|---|" + "---|" * len(methods)]
        per = {m: self.scores(m, "all").per_class for m in methods}
        for name, row in per[methods[0]].items():
            points = f"{row['points']:,}" if row["points"] else "absent"
            lines.append(f"| {name} | {points} | " + " | ".join(f"{100 * per[m][name]['iou']:.1f}" for m in methods)
                         + " |")
        return "\n".join(lines)


def predictions_to_ids(labels: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """Map vocabulary indices (``-1`` = other) to label-set class ids (``-1`` stays)."""
    lut = torch.tensor(classes + [-1], dtype=torch.int64)
    return lut[torch.where(labels >= 0, labels, torch.full_like(labels, len(classes)))]


def evaluate(items: Iterable[tuple[Scene, LiftedFeatures]], label_set: LabelSet, *, segmenter: Segmenter,
             student: StudentAffinityNet | None = None, text_embeddings: torch.Tensor | None = None,
             methods: tuple[str, ...] = ("direct", "purified")) -> Evaluation:
    """Evaluate labelled scenes (module docstring). ``text_embeddings`` (C, D) are for the label set's
    evaluated classes in order; without them the segmenter's text encoder embeds the class names."""
    classes = torch.nonzero(label_set.scored).flatten().tolist()
    names = [label_set.class_names[c] for c in classes]
    if text_embeddings is not None and len(text_embeddings) != len(classes):
        raise InputError(f"{len(text_embeddings)} text embeddings for the {len(classes)} evaluated classes of "
                         f"{label_set.name} (one row per class, in label-set order)")
    mats = {m: {s: ConfusionMatrix(label_set.num_classes) for s in SUBSETS} for m in methods}
    scene_names = []
    for scene, lifted in items:
        if scene.labels is None:
            raise InputError(f"scene {scene.name!r} has no labels to evaluate against")
        if scene.label_set is not None and scene.label_set.name != label_set.name:
            raise InputError(f"scene {scene.name!r} is labelled in {scene.label_set.name}, not {label_set.name}")
        scene_names.append(scene.name)
        segmenter.set_scene(scene, lifted, student)
        texts = None if text_embeddings is not None else names
        for m in methods:
            r = segmenter.query(texts, text_embeddings=text_embeddings, purify=(m != "direct"), fast=True)
            pred = predictions_to_ids(r.labels, classes)
            mats[m]["all"].update(pred, scene.labels)
            mats[m]["seen"].update(pred[lifted.seen], scene.labels[lifted.seen])
    return Evaluation(label_set, mats, scene_names)
