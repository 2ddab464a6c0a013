"""The Student Affinity Network and its label-free training by contrastive distillation.

* :mod:`.sparse`: pure-PyTorch sparse 3D convolution and voxel pyramids;
* :mod:`.network`: :class:`StudentConfig`, presets, the network and its per-voxel input;
* :mod:`.checkpoint`: self-describing checkpoints (save, read, :func:`load_student`);
* :mod:`.distill`: teacher-guided pair sampling and the InfoNCE loss;
* :mod:`.data`: training scenes (:class:`DistillScene`, :func:`prepare_scene`);
* :mod:`.train`: the resumable training loop (:func:`train_student`);
* :mod:`.scene_selection`: choosing diverse training scenes without labels.
"""

from .checkpoint import load_student, read_checkpoint, save_student
from .config import TrainConfig
from .data import DistillScene, prepare_scene
from .distill import PairConfig
from .network import PRESETS, StudentAffinityNet, StudentConfig, build_student, student_config, student_inputs
from .train import TrainResult, train_student

__all__ = ["StudentConfig", "StudentAffinityNet", "PRESETS", "student_config", "build_student", "student_inputs",
           "load_student", "save_student", "read_checkpoint", "DistillScene", "prepare_scene", "PairConfig",
           "TrainConfig", "TrainResult", "train_student"]
