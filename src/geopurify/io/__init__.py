"""Scan IO: the scene and frame model, readers of every supported layout, and file formats.

* :mod:`.scene`: :class:`Scene` (points, colours, normals, labels); :mod:`.frames`: :class:`Frame`,
  lazily loaded :class:`Frames`;
* :mod:`.layouts`: :func:`load_scan` and :func:`detect_layout` over the layouts (ScanNet, 7-Scenes,
  Pointcept, ``.pth``, PLY, ...);
* :mod:`.ply`, :mod:`.images`, :mod:`.arrays`, :mod:`.text`: PLY point clouds and meshes, colour and depth
  images, ``.npy`` arrays, small text matrices; :mod:`.summary`: what ``geopurify info`` prints.
"""

from .frames import Frame, Frames, FrameSpec
from .images import read_color, read_depth
from .layouts import LAYOUTS, Scan, detect_layout, load_scan
from .ply import read_ply, write_ply
from .scene import Scene
from .text import read_matrix

__all__ = ["Scene", "Frame", "Frames", "FrameSpec", "Scan", "LAYOUTS", "load_scan", "detect_layout", "read_color",
           "read_depth", "read_ply", "write_ply", "read_matrix"]
