"""Synthetic data and simulation: a procedurally generated furnished room (the embedded default scan),
noisy class features made from ground truth, a virtual camera rig with a z-buffer renderer, and a
simulated 2D segmenter (protocol "scannet-sim v1")."""

from .features import class_prototypes, noisy_class_features
from .room import make_room
from .segmenter import SCANNET_SIM_V1, SegmenterNoise, SimulatedSegmenter, simulate_lifting
from .views import RenderedView, render_views, room_cameras

__all__ = ["make_room", "noisy_class_features", "class_prototypes", "room_cameras", "render_views", "RenderedView",
           "SegmenterNoise", "SimulatedSegmenter", "SCANNET_SIM_V1", "simulate_lifting"]
