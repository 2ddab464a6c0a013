"""geopurify: open-vocabulary 3D semantic segmentation of indoor scans (GeoPurify).

Packages in data-flow order: :mod:`~geopurify.io` (scans) -> :mod:`~geopurify.encoders` (2D features)
-> :mod:`~geopurify.lifting` -> :mod:`~geopurify.teachers` -> :mod:`~geopurify.student` (network,
distillation, training) -> :mod:`~geopurify.segment` (pooling, :class:`Segmenter`) ->
:mod:`~geopurify.evaluation` -> :mod:`~geopurify.viz`; :mod:`~geopurify.sim` holds the demo and the
simulator, :mod:`~geopurify.workflows` what the command line runs.

    import geopurify as gp
    seg = gp.Segmenter.from_checkpoint("runs/a/best.pt", encoder=gp.get_encoder("clip-hf", source="my-clip/"))
    seg.set_scan(gp.load_scan("scans/scene0011_00"), vocabulary=["chair", "table", "sofa"])
    result = seg.query(["chair", "table", "sofa"])          # labels (N,), scores (N, 3)
"""

from ._version import __version__
from .camera import project, scale_intrinsics, world_to_camera
from .encoders import encode_vocabulary, get_encoder, get_text_encoder
from .errors import GeopurifyError, InputError, MissingDependencyError, UnknownNameError
from .evaluation import ConfusionMatrix, evaluate
from .geometry import VoxelGrid, estimate_normals, knn, scatter_mean, voxelize
from .io import Frame, Frames, FrameSpec, Scan, Scene, detect_layout, load_scan
from .labels import LABEL_SETS, LabelSet, get_label_set, map_source_ids
from .lifting import FeatureSource, LiftConfig, LiftedFeatures, lift_features, lift_scan
from .segment import PoolingConfig, QueryResult, Segmenter
from .student import StudentConfig, TrainConfig, build_student, load_student, student_config, train_student
from .teachers import get_teacher, teacher_features

__all__ = [
    "Scene", "Frame", "Frames", "FrameSpec", "Scan", "load_scan", "detect_layout",
    "LabelSet", "LABEL_SETS", "get_label_set", "map_source_ids",
    "VoxelGrid", "voxelize", "scatter_mean", "knn", "estimate_normals",
    "project", "world_to_camera", "scale_intrinsics",
    "get_encoder", "get_text_encoder", "encode_vocabulary",
    "LiftConfig", "LiftedFeatures", "FeatureSource", "lift_features", "lift_scan",
    "get_teacher", "teacher_features", "StudentConfig", "student_config", "build_student", "load_student",
    "TrainConfig", "train_student", "PoolingConfig", "Segmenter", "QueryResult", "ConfusionMatrix", "evaluate",
    "GeopurifyError", "InputError", "MissingDependencyError", "UnknownNameError", "__version__",
]
