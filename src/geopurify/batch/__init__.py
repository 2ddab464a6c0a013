"""Many scans in one command: a resumable batch runner (``geopurify run``), locally or on Ray.

>>> from geopurify.batch import RunConfig, run_batch                      # doctest: +SKIP
>>> run_batch(["scans/scene*"], "out/", RunConfig(stages=("lift", "segment"), encoder=spec, vocabulary=vocab))
"""

from .config import STAGE_ORDER, RunConfig
from .executors import EXECUTORS, Executor, LocalExecutor, get_executor
from .manifest import Manifest
from .runner import BatchResult, expand_scans, merge_evaluations, run_batch, scan_keys
from .stages import STAGES, ScanTask, ScanWorker

__all__ = ["STAGE_ORDER", "RunConfig", "EXECUTORS", "Executor", "LocalExecutor", "get_executor", "Manifest",
           "BatchResult", "expand_scans", "merge_evaluations", "run_batch", "scan_keys", "STAGES", "ScanTask",
           "ScanWorker"]
