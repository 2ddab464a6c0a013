"""Evaluation against ground truth: confusion matrices, scores over labelled scans, affinity purity."""

from .affinity import affinity_purity, voxel_mode
from .evaluate import Evaluation, evaluate, predictions_to_ids
from .metrics import ConfusionMatrix, SegmentationScores

__all__ = ["ConfusionMatrix", "SegmentationScores", "Evaluation", "evaluate", "predictions_to_ids",
           "affinity_purity", "voxel_mode"]
