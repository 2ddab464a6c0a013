"""Segmentation metrics: a confusion matrix accumulated over scenes.

Segmentation metrics follow the GeoPurify/OpenScene protocol (spec section 7): intersection, union
and target counts are summed over all scenes first (not averaged per scene); then per class

    IoU_c = TP_c / (TP_c + FP_c + FN_c),    Acc_c = TP_c / (TP_c + FN_c)

and mIoU / mAcc are plain means over the evaluated classes, a class absent from the ground truth
counting 0 (as upstream; ``present_only=True`` averages over present classes instead). Points whose
ground truth is ignored (-1, or a class not evaluated) are skipped; predictions outside the evaluated
classes count as errors. "Foreground" means without wall, floor and ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..labels import LabelSet


class ConfusionMatrix:
    """``(C, C)`` counts, rows = ground truth, columns = prediction, over ``num_classes`` classes."""

    def __init__(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ValueError("num_classes must be positive")
        self.num_classes = num_classes
        self.counts = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self.missed = torch.zeros(num_classes, dtype=torch.int64)   # targets predicted outside [0, C)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> ConfusionMatrix:
        """Add ``(N,)`` predictions and targets (int). Targets outside ``[0, C)`` are ignored;
        predictions outside it are counted as wrong (they add to FN but to no class's FP)."""
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
        c = self.num_classes
        pred, target = pred.reshape(-1).long().cpu(), target.reshape(-1).long().cpu()
        keep = (target >= 0) & (target < c)
        pred, target = pred[keep], target[keep]
        inside = (pred >= 0) & (pred < c)
        idx = target[inside] * c + pred[inside]
        self.counts += torch.bincount(idx, minlength=c * c).reshape(c, c)
        self.missed += torch.bincount(target[~inside], minlength=c)
        return self

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        if other.num_classes != self.num_classes:
            raise ValueError("cannot merge confusion matrices of different sizes")
        self.counts += other.counts
        self.missed += other.missed
        return self

    @property
    def tp(self) -> torch.Tensor:
        return self.counts.diag()

    @property
    def target(self) -> torch.Tensor:
        """Ground-truth points per class (including predictions outside the classes)."""
        return self.counts.sum(1) + self.missed

    def iou(self) -> torch.Tensor:
        """``(C,) float64`` per-class IoU (0 where the class has neither points nor predictions)."""
        union = self.target + self.counts.sum(0) - self.tp
        return self.tp.double() / union.double().clamp_min(1)

    def acc(self) -> torch.Tensor:
        return self.tp.double() / self.target.double().clamp_min(1)

    def summary(self, label_set: LabelSet | None = None, classes: list[int] | None = None,
                present_only: bool = False) -> SegmentationScores:
        """Scores over ``classes`` (default: the label set's scored classes, else all)."""
        if classes is None:
            classes = (torch.nonzero(label_set.scored).flatten().tolist() if label_set is not None
                       else list(range(self.num_classes)))
        names = [label_set.class_names[c] for c in classes] if label_set is not None else [str(c) for c in classes]
        iou, acc, present = self.iou(), self.acc(), self.target > 0
        idx = torch.tensor(classes, dtype=torch.int64)
        use = idx[present[idx]] if present_only else idx
        bg = set(label_set.background) if label_set is not None else {"wall", "floor", "ceiling"}
        fg = torch.tensor([c for c, n in zip(classes, names) if n not in bg], dtype=torch.int64)
        fg = fg[present[fg]] if present_only else fg

        def mean(v: torch.Tensor, sel: torch.Tensor) -> float:
            return float(v[sel].mean()) if sel.numel() else float("nan")
        total = self.target[idx].sum()
        return SegmentationScores(
            miou=mean(iou, use), macc=mean(acc, use), fg_miou=mean(iou, fg), fg_macc=mean(acc, fg),
            overall_acc=float(self.tp[idx].sum()) / max(1, int(total)),
            per_class={n: {"iou": float(iou[c]), "acc": float(acc[c]), "points": int(self.target[c])}
                       for c, n in zip(classes, names)},
            num_points=int(total))


@dataclass(frozen=True)
class SegmentationScores:
    """mIoU etc. as fractions in [0, 1]; ``per_class[name] = {iou, acc, points}``."""

    miou: float
    macc: float
    fg_miou: float
    fg_macc: float
    overall_acc: float
    per_class: dict[str, dict[str, float]]
    num_points: int
