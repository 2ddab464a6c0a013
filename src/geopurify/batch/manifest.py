"""The manifest of a batch run: ``<out>/manifest.json``, one entry per scan, written by the driver only.

An entry records the scan's ``state`` (``done``, ``failed`` or ``queued``: handed to the executor, no
result came back yet; after a killed driver, still to do), its path, the files each stage
wrote (relative to the output folder, with size and SHA-256, :func:`~geopurify._fileio.file_digest`),
seconds per stage, frames, device, host, attempts and the last error. The manifest is rewritten
atomically after every scan, so it is never half-written and loses at most the scans in flight.

A scan counts as complete when it is ``done`` for the run's stages and every recorded file still has
its recorded size and checksum; anything else is redone.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from .._fileio import atomic_write_text, file_digest
from ..errors import InputError

log = logging.getLogger(__name__)
FORMAT = "geopurify-batch"
VERSION = 1
STATES = ("done", "failed", "queued")


class Manifest:
    """The manifest of the run folder ``out`` (module docstring), for a run with ``config`` (a dict)."""

    def __init__(self, out: str | os.PathLike[str], config: dict[str, Any]) -> None:
        self.out = Path(out)
        self.path = self.out / "manifest.json"
        self.config = config
        self.scans: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT or not isinstance(data.get("scans"), dict):
                raise ValueError("not a geopurify batch manifest")
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read the run's manifest ({exc}); use another output folder", self.path) from None
        if data.get("config") != self.config:
            changed = sorted(k for k in {*self.config, *data.get("config", {})}
                             if self.config.get(k) != data.get("config", {}).get(k))
            raise InputError(f"was written by a run with another configuration (differs in: {', '.join(changed)}); "
                             "use another output folder, or --restart to start afresh", self.path)
        self.scans = data["scans"]

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps({"format": FORMAT, "version": VERSION, "config": self.config,
                                                 "scans": self.scans}, indent=1))

    def is_complete(self, key: str, stages: tuple[str, ...]) -> bool:
        """Whether ``key`` is done for ``stages`` with every recorded file intact (size and SHA-256)."""
        entry = self.scans.get(key)
        if not entry or entry.get("state") != "done" or set(entry.get("stages", {})) != set(stages):
            return False
        for stage in entry["stages"].values():
            for rel, digest in stage.get("files", {}).items():
                p = self.out / rel
                if not p.is_file() or p.stat().st_size != digest["bytes"] or file_digest(p) != digest:
                    log.warning("%s: %s is missing or changed since it was written; redoing the scan", key, rel)
                    return False
        return True

    def mark_queued(self, key: str, path: str) -> None:
        entry = self.scans.setdefault(key, {"path": path, "attempts": 0})
        entry.update(state="queued", path=path, queued=time.time())

    def record(self, key: str, outcome: dict[str, Any]) -> None:
        """Store a worker's outcome (:class:`~geopurify.batch.stages.ScanWorker.process`) for ``key``."""
        entry = self.scans.setdefault(key, {"path": outcome.get("path"), "attempts": 0})
        entry["attempts"] = int(entry.get("attempts", 0)) + 1
        entry.update(state="done" if outcome["ok"] else "failed", stages=outcome.get("stages", {}),
                     error=outcome.get("error"), frames=outcome.get("frames"), device=outcome.get("device"),
                     host=outcome.get("host"), pid=outcome.get("pid"), finished=time.time())
