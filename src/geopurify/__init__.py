"""geopurify: open-vocabulary 3D semantic segmentation of indoor scans (GeoPurify).

Data flow: scene IO (:mod:`geopurify.datasets`, :class:`Scene`, :class:`Frames`) -> 2D features ->
lifting -> teacher -> student/training -> pooling -> query/eval -> viz.
"""

from .camera import project, scale_intrinsics, world_to_camera
from .datasets import Scan, detect_layout, load_scan
from .errors import GeopurifyError, InputError, MissingDependencyError
from .frames import Frame, Frames, FrameSpec
from .geometry import VoxelGrid, estimate_normals, knn, scatter_mean, voxelize
from .labels import LABEL_SETS, LabelSet, get_label_set, map_source_ids
from .scene import Scene

__version__ = "0.1.0"

__all__ = [
    "Scene", "Frame", "Frames", "FrameSpec", "Scan", "load_scan", "detect_layout",
    "LabelSet", "LABEL_SETS", "get_label_set", "map_source_ids",
    "VoxelGrid", "voxelize", "scatter_mean", "knn", "estimate_normals",
    "project", "world_to_camera", "scale_intrinsics",
    "GeopurifyError", "InputError", "MissingDependencyError", "__version__",
]
