"""Geometry-Guided Pooling over the student's affinities, and the :class:`Segmenter` that answers queries."""

from .pooling import PoolingConfig, affinity_matrix, affinity_weights, knn_graph, propagate
from .search import QueryHits, top_points
from .segmenter import QueryResult, Segmenter

__all__ = ["PoolingConfig", "knn_graph", "affinity_weights", "affinity_matrix", "propagate", "Segmenter", "QueryResult",
           "QueryHits", "top_points"]
