"""Synthetic data: a procedurally generated furnished room (the embedded default scan) and noisy
class features made from ground truth."""

from .features import class_prototypes, noisy_class_features
from .room import make_room

__all__ = ["make_room", "noisy_class_features", "class_prototypes"]
