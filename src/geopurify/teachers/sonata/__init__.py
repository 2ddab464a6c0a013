"""The ``sonata`` teacher: Sonata (a self-supervised Point Transformer V3 encoder) in plain PyTorch.

No spconv, torch_scatter, timm or flash-attn: the encoder (``model.py``) runs on the package's
submanifold convolution (:mod:`geopurify.student.sparse`) and on
``torch.nn.functional.scaled_dot_product_attention`` (which picks fused kernels on GPU by itself).
It loads the released checkpoints ``{"config", "state_dict"}`` (``checkpoint.py``), prepares the scan
as ``sonata.transform.default()`` does and upcasts the hierarchical output to per-point features
(``features.py``): 1088 channels with the released configuration.

Verified against the official implementation (``facebookresearch/sonata`` 18c09ff, spconv 2.3.8 on
CPU) by golden outputs (``tools/make_sonata_golden.py``, ``tests/test_sonata.py``).

Usage::

    geopurify train ... --teacher sonata --teacher-path sonata.pth
    get_teacher("sonata", path="sonata.pth")(scene)        # (N, 1088) float32
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

from ..._fileio import file_digest
from ..._optional import require
from ...errors import InputError
from ...io.scene import Scene
from .checkpoint import build_model, load_checkpoint, load_model
from .features import SonataInput, prepare, upcast
from .model import PointTransformerV3

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+(/[\w.-]+\.pth)?$")


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A local checkpoint file, or a hub id ``owner/repo[/file.pth]`` (default file ``<repo>.pth``,
    e.g. ``facebook/sonata``) downloaded through ``huggingface_hub`` where the network allows."""
    p = Path(path)
    if p.is_file():
        return p
    text = str(path)
    if p.exists() or not _HUB_ID.match(text):
        raise InputError("Sonata checkpoint not found (expected a .pth file or a hub id like facebook/sonata)", p)
    hub = require("huggingface_hub", "hub", feature="downloading a Sonata checkpoint from the hub")
    owner, repo, *rest = text.split("/")
    filename = rest[0] if rest else f"{repo}.pth"
    try:
        return Path(hub.hf_hub_download(repo_id=f"{owner}/{repo}", filename=filename))
    except Exception as exc:  # noqa: BLE001  (offline, unknown repo: one line naming the id)
        raise InputError(f"cannot download {filename} from hub repo {owner}/{repo} ({type(exc).__name__}); "
                         "download it elsewhere and pass the file", text) from None


class SonataTeacher:
    """Per-point Sonata features of a scene, ``(N, D)`` float32 (``D = 1088`` for the released model).

    Args:
        path: checkpoint file ``{"config", "state_dict"}`` (e.g. ``sonata.pth``) or a hub id.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        grid_size: voxel edge in metres of the input sampling (Sonata: 0.02).
        upcast_levels: stages concatenated by :func:`~geopurify.teachers.sonata.features.upcast`
            (GeoPurify: 2).
        half: fp16 autocast on CUDA (ignored on CPU).
    """

    name = "sonata"

    def __init__(self, path: str | os.PathLike[str], device: str = "auto", grid_size: float = 0.02,
                 upcast_levels: int = 2, half: bool = True) -> None:
        if grid_size <= 0 or upcast_levels < 0:
            raise InputError(f"grid_size must be > 0 and upcast_levels >= 0, got {grid_size}, {upcast_levels}")
        ckpt = resolve_checkpoint(path)
        self.model = load_model(ckpt)
        self.device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
        self.model.to(self.device)
        self.grid_size, self.upcast_levels, self.half = float(grid_size), int(upcast_levels), bool(half)
        self.settings: dict[str, Any] = {"checkpoint": file_digest(ckpt)["sha256"], "grid_size": self.grid_size,
                                         "upcast_levels": self.upcast_levels}

    @property
    def channels(self) -> int:
        ch = self.model.cfg.enc_channels
        return sum(ch[len(ch) - 1 - min(self.upcast_levels, len(ch) - 1):])

    def voxel_features(self, inp: SonataInput) -> torch.Tensor:
        """Upcast stage-0 voxel features ``(M, D)`` float32 of a prepared input."""
        cuda = self.device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.float16, enabled=cuda and self.half):
            stages = self.model(inp.grid.to(self.device), inp.feat.to(self.device))
            return upcast(stages, self.upcast_levels).float()

    def __call__(self, scene: Scene) -> torch.Tensor:
        inp = prepare(scene.coords, scene.colors, scene.normals, self.grid_size)
        log.debug("sonata: %d points in %d voxels", scene.num_points, inp.grid.shape[0])
        return self.voxel_features(inp).cpu()[inp.inverse]


__all__ = ["PointTransformerV3", "SonataInput", "SonataTeacher", "build_model", "load_checkpoint", "load_model",
           "prepare", "resolve_checkpoint", "upcast"]
