"""The work on one scan: a :class:`ScanWorker` holds the models once and runs the stages of a task.

Stages (registry :data:`STAGES`, entry-point group ``geopurify.batch_stages``), each
``stage(worker, ctx) -> list of files written`` into the scan's subfolder, atomically:

==============  ==============================================================================
``lift``        ``<scene>.npz`` lifted features (as ``geopurify lift``)
``segment``     ``<scene>_labels.npy``, ``_labels.ply``, ``_summary.json`` (as ``geopurify segment``)
``evaluate``    ``<scene>_evaluation.json``: the scan's confusion matrices (direct/purified x all/seen
                points), merged over scans by the driver (:func:`~geopurify.batch.runner.merge_evaluations`)
==============  ==============================================================================

A stage that needs lifted features takes the ``lift`` stage's, else ``<features>/<scene>.npz`` of
:attr:`RunConfig.features`, else lifts in memory with the encoder.

Fault injection for tests: with ``GEOPURIFY_BATCH_FAULT=<scan key>`` the process handling that scan
exits (``os._exit(3)``) the first time, leaving ``<out>/.faults/<key>`` so that the retry succeeds.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._fileio import atomic_path, file_digest, output_path, safe_name
from .._plugins import Registry
from ..encoders import ImageEncoder, TextEncoder
from ..errors import GeopurifyError, InputError
from ..evaluation import evaluate
from ..io import Scan
from ..labels import get_label_set
from ..lifting import LiftedFeatures
from ..student.data import lifted_path
from .config import RunConfig

log = logging.getLogger(__name__)
FAULT_ENV = "GEOPURIFY_BATCH_FAULT"


@dataclass(frozen=True)
class ScanTask:
    """One scan of a run: its ``key`` (subfolder name), ``path`` and the run's output folder ``out``."""

    key: str
    path: str
    out: str


@dataclass
class ScanContext:
    """What the stages of one scan share: the scan, its subfolder, lifted features once known."""

    task: ScanTask
    scan: Scan
    folder: Path
    lifted: LiftedFeatures | None = None
    files: list[Path] = field(default_factory=list)


class ScanWorker:
    """Runs tasks for one :class:`RunConfig`, holding the encoder, text encoder and segmenter (with the
    student) from the first scan on. One per process: the local executor's, or one Ray actor's."""

    def __init__(self, config: RunConfig, device: str | None = None) -> None:
        from ..workflows import build_text_encoder, segmenter_for

        self.config = config
        self.device = device or config.device
        spec = config.encoder
        self.text: TextEncoder | None = build_text_encoder(spec.text_encoder, spec.text_source) if spec else None
        self._encoder: ImageEncoder | None = None
        self.per_scan_source = spec is not None and spec.source is not None and (
            "{scan}" in spec.source or "{name}" in spec.source)
        self.segmenter = None
        if {"segment", "evaluate"} & set(config.stages):
            self.segmenter = segmenter_for(config.student, purify=config.purify, text_encoder=self.text,
                                           pooling=config.pooling, lift_config=config.lift, device=self.device)

    def encoder_for(self, task: ScanTask) -> ImageEncoder:
        """The image encoder, built once (or per scan when its source names the scan)."""
        spec = self.config.encoder
        if spec is None:
            raise InputError("no encoder to lift with and no lifted features for this scan", task.path)
        if self._encoder is not None and not self.per_scan_source:
            return self._encoder
        source = spec.source.format(scan=task.path, name=Path(task.path).name) if spec.source else None
        enc = spec.build(source=source, text=self.text)
        if self.text is None:                              # share the encoder's own text encoder from now on
            self.text = getattr(enc, "text_encoder", None)
        if self.segmenter is not None and self.segmenter.text_encoder is None:
            self.segmenter.text_encoder = self.text
        self._encoder = enc
        return enc

    def lifted_for(self, ctx: ScanContext) -> LiftedFeatures:
        from ..workflows import lift

        if ctx.lifted is None:
            if self.config.features is not None and "lift" not in self.config.stages:
                ctx.lifted = LiftedFeatures.load(lifted_path(self.config.features, ctx.scan.scene.name),
                                                 scene=ctx.scan.scene)
            else:
                vocab = list(self.config.vocabulary) if self.config.vocabulary else None
                ctx.lifted = lift(ctx.scan, self.encoder_for(ctx.task), vocabulary=vocab, config=self.config.lift,
                                  progress=False)
        return ctx.lifted

    def text_ready(self, ctx: ScanContext):  # noqa: ANN201 - Segmenter
        """The segmenter, with a text encoder for the vocabulary (the encoder's own if none was given)."""
        seg = self.segmenter
        if seg.text_encoder is None and self.config.encoder is not None:
            self.encoder_for(ctx.task)
        if seg.text_encoder is None:
            raise InputError("give a text encoder (--text-encoder minilm, clip-hf) or an encoder with its own, to "
                             "embed the vocabulary")
        return seg

    def process(self, task: ScanTask) -> dict[str, Any]:
        """Run the stages on one scan; never raises for a problem with the scan: the outcome says
        ``ok`` with per-stage ``seconds`` and ``files`` (relative path -> size and SHA-256), or the error
        (any exception fails the scan, not the run; ``-v`` logs its traceback)."""
        from ..workflows import open_scan

        _maybe_fail(task)
        out: dict[str, Any] = {"key": task.key, "path": task.path, "stages": {}, "device": str(self.device),
                               "host": socket.gethostname(), "pid": os.getpid(), "frames": None}
        try:
            t0 = time.perf_counter()
            scan = open_scan(task.path, layout=self.config.layout, label_set=self.config.label_set)
            ctx = ScanContext(task, scan, output_path(task.out, task.key))
            out["frames"] = len(scan.frames) if scan.frames is not None else 0
            load = time.perf_counter() - t0
            for name in self.config.stages:
                t0 = time.perf_counter()
                files = STAGES.get(name)(self, ctx)
                root = Path(task.out)
                out["stages"][name] = {"seconds": time.perf_counter() - t0 + load,
                                       "files": {os.fspath(f.relative_to(root)): file_digest(f) for f in files}}
                load = 0.0
            out["ok"], out["error"] = True, None
        except GeopurifyError as exc:                     # bad input: one line
            log.warning("%s: %s", task.key, exc)
            out["ok"], out["error"] = False, f"{type(exc).__name__}: {exc}"
        except Exception as exc:                          # anything else fails this scan, not the run
            log.warning("%s: %s: %s", task.key, type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            out["ok"], out["error"] = False, f"{type(exc).__name__}: {exc}"
        return out


def _maybe_fail(task: ScanTask) -> None:
    if os.environ.get(FAULT_ENV) != task.key:
        return
    marker = Path(task.out) / ".faults" / safe_name(task.key)
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    log.error("%s=%s: this process exits now (fault injection)", FAULT_ENV, task.key)
    os._exit(3)


def _lift(worker: ScanWorker, ctx: ScanContext) -> list[Path]:
    lifted = worker.lifted_for(ctx)
    path = lifted_path(ctx.folder, ctx.scan.scene.name)
    lifted.save(path)
    return [path]


def _segment(worker: ScanWorker, ctx: ScanContext) -> list[Path]:
    from ..workflows import segment

    cfg = worker.config
    res = segment(ctx.scan, worker.text_ready(ctx), list(cfg.vocabulary), ctx.folder, lifted=worker.lifted_for(ctx),
                  purify=cfg.purify, other_threshold=cfg.other_threshold, progress=False)
    return [res.labels, res.ply, res.summary]


def _evaluate(worker: ScanWorker, ctx: ScanContext) -> list[Path]:
    cfg = worker.config
    label_set = get_label_set(cfg.label_set or "scannet20")
    methods = ("direct", "purified") if cfg.purify else ("direct",)
    seg = worker.text_ready(ctx)
    ev = evaluate([(ctx.scan.scene, worker.lifted_for(ctx))], label_set, segmenter=seg, student=seg.student,
                  methods=methods)
    data = {"scene": ctx.scan.scene.name, "label_set": label_set.name,
            "matrices": {m: {s: {"counts": cm.counts.tolist(), "missed": cm.missed.tolist()} for s, cm in d.items()}
                         for m, d in ev.matrices.items()}}
    path = output_path(ctx.folder, f"{safe_name(ctx.scan.scene.name)}_evaluation.json")
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data), encoding="utf-8")
    return [path]


#: the stages by name (module docstring)
STAGES: Registry[Callable[[ScanWorker, ScanContext], list[Path]]] = Registry(
    "batch stage", "geopurify.batch_stages", {"lift": _lift, "segment": _segment, "evaluate": _evaluate})


def torch_threads(n: int | None) -> None:
    """Limit a worker's intra-op threads to its share of the machine."""
    if n:
        torch.set_num_threads(max(1, int(n)))
