"""Synthetic data: a procedurally generated furnished room (the embedded default scan)."""

from .room import make_room

__all__ = ["make_room"]
