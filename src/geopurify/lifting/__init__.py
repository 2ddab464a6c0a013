"""Lifting 2D features onto 3D points: visibility, multi-view fusion, the lifted-features container.

* :mod:`.visibility`: which points a frame sees (projection of :mod:`geopurify.camera` + depth test);
* :mod:`.fusion`: one class per fusion strategy (``mean``, ``consensus``);
* :mod:`.lift`: the loop over frames (:func:`lift_features`, :func:`lift_scan`);
* :mod:`.lifted`: :class:`LiftedFeatures`, its file format, and :class:`FeatureSource`;
* :mod:`.importers`: features lifted by other tools (OpenScene), read as :class:`LiftedFeatures`.
"""

from .fusion import FUSIONS, ConsensusFusion, MeanFusion
from .importers import FEATURE_IMPORTERS, import_features, import_openscene
from .lift import LiftConfig, lift_features, lift_scan
from .lifted import FeatureSource, LiftedFeatures, fill_from_nearest
from .visibility import Visibility, visible_points

__all__ = ["LiftConfig", "lift_features", "lift_scan", "LiftedFeatures", "FeatureSource", "fill_from_nearest",
           "Visibility", "visible_points", "FUSIONS", "MeanFusion", "ConsensusFusion", "FEATURE_IMPORTERS",
           "import_features", "import_openscene"]
