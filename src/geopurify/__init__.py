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
from .lifting import LiftConfig, LiftedFeatures, lift_features, lift_scan
from .metrics import ConfusionMatrix
from .pooling import PoolingConfig
from .query import Segmenter
from .scene import Scene
from .student import StudentConfig, build_student, load_student, student_config
from .teachers import get_teacher, teacher_features
from .train import TrainConfig, train_student

__version__ = "0.1.0"

__all__ = [
    "Scene", "Frame", "Frames", "FrameSpec", "Scan", "load_scan", "detect_layout",
    "LabelSet", "LABEL_SETS", "get_label_set", "map_source_ids",
    "VoxelGrid", "voxelize", "scatter_mean", "knn", "estimate_normals",
    "project", "world_to_camera", "scale_intrinsics",
    "LiftConfig", "LiftedFeatures", "lift_features", "lift_scan",
    "get_teacher", "teacher_features", "StudentConfig", "student_config", "build_student", "load_student",
    "TrainConfig", "train_student", "PoolingConfig", "Segmenter", "ConfusionMatrix",
    "GeopurifyError", "InputError", "MissingDependencyError", "__version__",
]
