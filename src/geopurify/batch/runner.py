"""``geopurify run`` as a library call: many scans, one command, resumable (:func:`run_batch`).

The output folder holds one subfolder per scan (named after the scan's folder or file, :func:`scan_keys`)
with that scan's outputs, the manifest (:mod:`geopurify.batch.manifest`) and, with the ``evaluate``
stage, ``evaluation.json``: confusion matrices summed over all scans (the protocol of
:mod:`geopurify.evaluation.metrics`) with a row per scan. Re-running the same command skips complete
scans, redoes partial and queued ones and retries failed ones; another configuration is refused.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .._fileio import RunLock, atomic_write_text, check_output_dir, remove_stale_temporaries, safe_name
from ..errors import InputError
from ..evaluation import ConfusionMatrix, Evaluation
from ..labels import get_label_set
from .config import RunConfig
from .executors import get_executor
from .manifest import Manifest
from .stages import ScanTask

log = logging.getLogger(__name__)


def expand_scans(items: list[str | os.PathLike[str]]) -> list[str]:
    """Scan arguments: paths, globs (``scans/scene*``), or ``.txt`` files listing one per line."""
    from ..workflows import scan_paths

    out: list[str] = []
    for item in scan_paths(items):
        if glob.has_magic(item):
            hits = sorted(glob.glob(item))
            if not hits:
                raise InputError("the pattern matches no scan", item)
            out += hits
        else:
            out.append(item)
    return out


def scan_keys(paths: list[str]) -> dict[str, str]:
    """``subfolder name -> scan path``: each scan's folder (or file stem) as a safe name; a scan given twice
    counts once.

    Raises:
        InputError: two scans would share a subfolder.
    """
    keys: dict[str, str] = {}
    for p in paths:
        k = safe_name(Path(p).stem if Path(p).is_file() else Path(p).name)
        if k in keys and os.path.abspath(keys[k]) != os.path.abspath(p):
            raise InputError(f"two scans would share the output subfolder {k!r}: {keys[k]} and {p}")
        keys[k] = p
    return keys


@dataclass
class BatchResult:
    """What a run did: scans ``done`` now, ``skipped`` (complete before), ``failed``; per-stage seconds
    and frames of the scans done now; the merged evaluation (``evaluate`` stage)."""

    out: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=dict)
    frames: int = 0
    wall_seconds: float = 0.0
    evaluation: Evaluation | None = None

    def table(self) -> str:
        """Markdown summary: scans done / skipped / failed, seconds per stage (p50, p90), frames/s."""
        lines = [f"scans: {len(self.done)} done, {len(self.skipped)} skipped (complete), {len(self.failed)} failed; "
                 f"{self.wall_seconds:.1f} s", "", "| stage | scans | p50 s | p90 s | total s |", "|---|---|---|---|---|"]
        for stage, secs in self.seconds.items():
            q = statistics.quantiles(secs, n=10, method="inclusive") if len(secs) > 1 else [secs[0]] * 9
            lines.append(f"| {stage} | {len(secs)} | {statistics.median(secs):.2f} | {q[8]:.2f} | {sum(secs):.1f} |")
        if self.frames and self.wall_seconds:
            lines += ["", f"frames/s: {self.frames / self.wall_seconds:.1f} ({self.frames} frames)"]
        for key, err in self.failed.items():
            lines.append(f"failed: {key}: {err}")
        return "\n".join(lines)


def run_batch(scans: list[str | os.PathLike[str]], out: str | os.PathLike[str], config: RunConfig, *,
              executor: str = "local", executor_options: dict[str, Any] | None = None, retries: int = 1,
              restart: bool = False, progress: bool = True) -> BatchResult:
    """Run ``config``'s stages over ``scans`` into ``out`` (module docstring) with an executor from
    :data:`~geopurify.batch.executors.EXECUTORS`; a failed scan is tried up to ``retries`` more times.

    Raises:
        InputError: no scans, two scans with one subfolder, another run writing in ``out``, or a manifest
            from another configuration (``restart=True`` discards it).
    """
    paths = expand_scans(list(scans))
    if not paths:
        raise InputError("no scans given")
    by_key = {k: os.path.abspath(p) for k, p in scan_keys(paths).items()}     # workers may run elsewhere
    keys = list(by_key)
    config = config.resolved()
    out = check_output_dir(out)
    if retries < 0:
        raise InputError(f"--retries must be >= 0, got {retries}")
    ex = get_executor(executor, **(executor_options or {}))
    t_start = time.perf_counter()
    with RunLock(out):
        if restart:
            (out / "manifest.json").unlink(missing_ok=True)
        manifest = Manifest(out, config.to_dict())
        result = BatchResult(out)
        todo = []
        for key in keys:
            if manifest.is_complete(key, config.stages):
                result.skipped.append(key)
                continue
            for p in remove_stale_temporaries(out / key) if (out / key).is_dir() else []:
                log.warning("removed %s, left by a run that was killed while writing", p)
            manifest.mark_queued(key, by_key[key])
            todo.append(ScanTask(key, by_key[key], os.path.abspath(out)))
        manifest.save()
        if result.skipped:
            log.info("%d of %d scans are complete; running %d", len(result.skipped), len(keys), len(todo))
        bar = tqdm(total=len(keys), initial=len(result.skipped), disable=not progress, desc="scans", unit="scan")
        for outcome in ex.run(config, todo, retries):
            manifest.record(outcome["key"], outcome)
            manifest.save()
            if outcome["ok"]:
                result.done.append(outcome["key"])
                result.failed.pop(outcome["key"], None)
                result.frames += outcome.get("frames") or 0
                for stage, rec in outcome["stages"].items():
                    result.seconds.setdefault(stage, []).append(rec["seconds"])
                bar.set_postfix({s: f"{statistics.mean(v):.1f}s/scan" for s, v in result.seconds.items()})
            elif not outcome["retry"]:
                result.failed[outcome["key"]] = outcome["error"]
            if outcome["ok"] or not outcome["retry"]:
                bar.update(1)
        bar.close()
        if "evaluate" in config.stages:
            result.evaluation = merge_evaluations(out, manifest, keys, config.label_set)
        result.wall_seconds = time.perf_counter() - t_start
        return result


def merge_evaluations(out: Path, manifest: Manifest, keys: list[str], label_set: str | None) -> Evaluation | None:
    """Sum the confusion matrices of the scans of ``keys`` that are done into one :class:`Evaluation`,
    written with a row per scan to ``<out>/evaluation.json`` (None: no scan is done)."""
    ls = get_label_set(label_set or "scannet20")
    mats: dict[str, dict[str, ConfusionMatrix]] = {}
    rows, scenes = {}, []
    for key in keys:
        entry = manifest.scans.get(key, {})
        if entry.get("state") != "done":
            continue
        (rel,) = entry["stages"]["evaluate"]["files"]
        data = json.loads((out / rel).read_text(encoding="utf-8"))
        scenes.append(data["scene"])
        one = Evaluation(ls, {}, [data["scene"]])
        for m, subsets in data["matrices"].items():
            for s, d in subsets.items():
                cm = ConfusionMatrix(ls.num_classes)
                cm.counts += _tensor(d["counts"])
                cm.missed += _tensor(d["missed"])
                one.matrices.setdefault(m, {})[s] = cm
                mats.setdefault(m, {}).setdefault(s, ConfusionMatrix(ls.num_classes)).merge(cm)
        rows[key] = {"scene": data["scene"], **{m: {"miou": one.scores(m).miou, "macc": one.scores(m).macc,
                                                     "points": one.scores(m).num_points} for m in one.matrices}}
    if not scenes:
        return None
    ev = Evaluation(ls, mats, scenes)
    atomic_write_text(out / "evaluation.json", json.dumps({**ev.to_dict(), "per_scan": rows}, indent=1))
    return ev


def _tensor(values: list) -> Any:
    import torch
    return torch.tensor(values, dtype=torch.int64)
