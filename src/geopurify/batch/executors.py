"""Executors: who runs the scans of a batch run. A registry (:data:`EXECUTORS`, entry-point group
``geopurify.executors``) of factories taking the executor's options and returning an :class:`Executor`.

=========  ==================================================================================
``local``  in this process, scans in order, one :class:`~geopurify.batch.stages.ScanWorker`
           (models loaded once)
``ray``    a Ray cluster: one actor per GPU (or per ``cpus_per_worker`` CPUs), each holding the
           models once (:mod:`geopurify.batch.ray_executor`, extra ``ray``)
=========  ==================================================================================

An executor yields one outcome per attempt (:meth:`ScanWorker.process`), in the order they finish, with
``retry=True`` when the scan will be tried again; only the driver (:func:`~geopurify.batch.runner.run_batch`)
writes the manifest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

from .._plugins import Registry
from .config import RunConfig
from .stages import ScanTask, ScanWorker


@runtime_checkable
class Executor(Protocol):
    """Runs tasks and yields their outcomes as they finish (module docstring)."""

    name: str

    def run(self, config: RunConfig, tasks: Sequence[ScanTask], retries: int) -> Iterator[dict[str, Any]]:
        """Process every task, trying a failed one up to ``retries`` more times."""
        ...


class LocalExecutor:
    """In-process, scans in order, one worker holding the models for the whole run."""

    name = "local"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def run(self, config: RunConfig, tasks: Sequence[ScanTask], retries: int) -> Iterator[dict[str, Any]]:
        from .stages import torch_threads

        if not tasks:
            return
        torch_threads(self.threads)
        worker = ScanWorker(config)
        for task in tasks:
            for attempt in range(retries + 1):
                outcome = worker.process(task)
                outcome["retry"] = not outcome["ok"] and attempt < retries
                yield outcome
                if outcome["ok"]:
                    break


def _ray(address: str | None = None, workers: int | None = None, cpus_per_worker: int = 1,
         gpus_per_worker: float | None = None) -> Executor:
    """The ``ray`` executor (:class:`~geopurify.batch.ray_executor.RayExecutor`), imported when asked for."""
    from .ray_executor import RayExecutor
    return RayExecutor(address, workers, cpus_per_worker, gpus_per_worker)


EXECUTORS: Registry[Callable[..., Executor]] = Registry("executor", "geopurify.executors",
                                                        {"local": LocalExecutor, "ray": _ray})


def get_executor(name: str, **options: Any) -> Executor:
    """An executor by name with its options (e.g. ``get_executor("ray", address="auto")``).

    Raises:
        UnknownNameError: no such executor.
        InputError: an option it does not take.
    """
    return EXECUTORS.build(name, **options)
