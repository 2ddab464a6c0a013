"""File formats: PLY point clouds and meshes, colour and depth images, small text matrices."""

from .images import read_color, read_depth
from .ply import read_ply, write_label_ply, write_ply
from .text import read_matrix

__all__ = ["read_color", "read_depth", "read_ply", "write_ply", "write_label_ply", "read_matrix"]
