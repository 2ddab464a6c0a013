"""The ``ray`` executor: scans processed by actors on a Ray cluster (extra ``ray``).

``ray.init()`` starts a local cluster when no ``address`` is given and none is running in this process;
``address="auto"`` or ``"host:port"`` joins a running one. One actor per GPU when the run's device is
CUDA and the cluster has GPUs, else one per ``cpus_per_worker`` CPUs (``workers`` caps the count); each
actor builds one :class:`~geopurify.batch.stages.ScanWorker` (encoder, text encoder, student) and then
takes scans one at a time, so the models are loaded once per actor.

Only the task (the scan's path and the output folder) goes to an actor and only its small outcome comes
back: every node reads the scans and writes the outputs itself, so the scan paths and the output folder
must be the same on every node (a shared file system). A worker process that dies is restarted by Ray
(re-loading its models) and its scan retried, up to ``retries`` times; an actor that stays dead is
replaced. Environment variables named ``GEOPURIFY_*`` are passed to the actors.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

from .._optional import require
from .config import RunConfig
from .stages import ScanTask, ScanWorker, torch_threads

log = logging.getLogger(__name__)


class ScanActor:
    """The body of one Ray actor: a worker with the models, on its share of CPUs (and its GPU)."""

    def __init__(self, config: RunConfig, threads: int) -> None:
        torch_threads(threads)
        self.worker = ScanWorker(config)

    def process(self, task: ScanTask) -> dict[str, Any]:
        return self.worker.process(task)


class RayExecutor:
    """Runs the scans on a Ray cluster (module docstring).

    Args:
        address: a running cluster (``auto`` or ``host:port``); None: start a local one.
        workers: number of actors (default: the GPUs, or the CPUs / ``cpus_per_worker``).
        cpus_per_worker: CPUs reserved per actor (and its torch threads).
        gpus_per_worker: GPUs per actor (default: 1 when the run's device is CUDA and the cluster has GPUs).
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, cpus_per_worker: int = 1,
                 gpus_per_worker: float | None = None) -> None:
        if cpus_per_worker < 1 or (workers is not None and workers < 1):
            raise ValueError("workers and cpus_per_worker must be positive")
        self.address, self.workers = address, workers
        self.cpus_per_worker, self.gpus_per_worker = cpus_per_worker, gpus_per_worker

    def _connect(self) -> Any:
        ray = require("ray", "ray", feature="the ray executor")
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=True)
        return ray

    def _actor_count(self, ray: Any, config: RunConfig, n_tasks: int) -> tuple[int, float]:
        res = ray.cluster_resources()
        gpus = self.gpus_per_worker
        if gpus is None:
            gpus = 1.0 if res.get("GPU", 0) and config.device.startswith("cuda") else 0.0
        n = self.workers or (int(res.get("GPU", 0) // gpus) if gpus else int(res.get("CPU", 1) // self.cpus_per_worker))
        return max(1, min(n, n_tasks)), gpus

    def run(self, config: RunConfig, tasks: Sequence[ScanTask], retries: int) -> Iterator[dict[str, Any]]:
        if not tasks:
            return
        ray = self._connect()
        n, gpus = self._actor_count(ray, config, len(tasks))
        env = {k: v for k, v in os.environ.items() if k.startswith("GEOPURIFY_")}
        actor_cls = ray.remote(ScanActor).options(
            num_cpus=self.cpus_per_worker, num_gpus=gpus, max_restarts=retries, max_task_retries=retries,
            runtime_env={"env_vars": env} if env else None)

        def new_actor() -> Any:
            return actor_cls.remote(config, self.cpus_per_worker)
        log.info("ray: %d actors (%d CPUs%s each) for %d scans", n, self.cpus_per_worker,
                 f", {gpus:g} GPU" if gpus else "", len(tasks))
        actors = [new_actor() for _ in range(n)]
        queue = [(t, 0) for t in reversed(tasks)]
        running: dict[Any, tuple[Any, ScanTask, int]] = {}
        try:
            while queue or running:
                while queue and actors:
                    actor, (task, attempt) = actors.pop(), queue.pop()
                    running[actor.process.remote(task)] = (actor, task, attempt)
                (ref,), _ = ray.wait(list(running), num_returns=1)
                actor, task, attempt = running.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    if isinstance(exc, ray.exceptions.RayActorError):   # died more often than it may restart
                        log.warning("%s: the worker died (%s); replacing it", task.key, type(exc).__name__)
                        ray.kill(actor, no_restart=True)
                        actor = new_actor()
                    outcome = {"key": task.key, "path": task.path, "ok": False, "stages": {},
                               "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
                actors.append(actor)
                outcome["retry"] = not outcome["ok"] and attempt < retries
                if outcome["retry"]:
                    queue.append((task, attempt + 1))
                yield outcome
        finally:
            for actor in actors + [a for a, _, _ in running.values()]:
                ray.kill(actor)


__all__ = ["RayExecutor", "ScanActor"]
