"""The demo and the simulator: a procedurally generated furnished room (the embedded default scan), noisy
class features made from ground truth, a virtual camera rig with a z-buffer renderer, a simulated 2D
mask model (protocol "scannet-sim v1"), and :func:`run_demo`, the whole pipeline on one scene."""

from .mask_model import SCANNET_SIM_V1, MaskModelNoise, SimulatedMaskModel, simulate_lifting
from .noisy import class_prototypes, noisy_class_features
from .room import make_room
from .views import RenderedView, render_views, room_cameras

__all__ = ["make_room", "noisy_class_features", "class_prototypes", "room_cameras", "render_views", "RenderedView",
           "MaskModelNoise", "SimulatedMaskModel", "SCANNET_SIM_V1", "simulate_lifting"]
