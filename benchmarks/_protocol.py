"""Protocol scannet-sim v1, shared by the purification and affinity benchmarks.

Real ScanNet geometry (the 16 scans of ``../shared/data/scannet50k``), simulated 2D predictions
(:data:`geopurify.sim.mask_model.SCANNET_SIM_V1`: 40 rendered views per scan, masks named by class and
embedded with MiniLM) lifted by the real consensus fusion; cached under ``--cache``. Students are trained
label-free on scans of rooms 0000-0003 (chosen by the label-free selection) and evaluated on the scans
of rooms 0004-0006, which they never saw.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from geopurify.encoders import encode_vocabulary, get_text_encoder
from geopurify.io import Scene, load_scan
from geopurify.labels import SCANNET20
from geopurify.lifting import LiftedFeatures
from geopurify.sim.mask_model import SCANNET_SIM_V1, simulate_lifting
from geopurify.student import DistillScene, TrainConfig, TrainResult, train_student
from geopurify.student.distill import PairConfig
from geopurify.student.network import student_config
from geopurify.student.scene_selection import lifted_histograms, select_scenes
from geopurify.teachers import get_teacher, teacher_features

# the same variable as the tests' (tests/conftest.py): the shared data folder, default ../shared/data
DATA = Path(os.environ.get("GEOPURIFY_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "scannet50k"
TRAIN_ROOMS = ("scene0000", "scene0001", "scene0002", "scene0003")
DEFAULT_CACHE = Path(__file__).resolve().parent / ".cache"


def class_embeddings(cache: Path) -> torch.Tensor:
    """MiniLM embeddings of the ScanNet20 class names, cached in ``cache`` (so that a machine without the
    text encoder, e.g. a GPU machine, can run the protocol from a cache that holds this file)."""
    path = cache / "scannet20-minilm.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    emb = encode_vocabulary(get_text_encoder("minilm"), list(SCANNET20.class_names))
    torch.save(emb, path)
    return emb


def lifted_for(scene: Scene, class_emb: torch.Tensor, cache: Path) -> LiftedFeatures:
    key = hashlib.sha1(json.dumps(SCANNET_SIM_V1.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    path = cache / f"{scene.name}.sim-v1-{key}.npz"
    if path.is_file():
        return LiftedFeatures.load(path, num_points=scene.num_points)
    lifted, _ = simulate_lifting(scene, class_emb, noise=SCANNET_SIM_V1, num_views=40, seed=0)
    lifted.save(path)
    return lifted


@dataclass
class Protocol:
    cache: Path
    names: list[str]
    scenes: dict[str, Scene]
    lifted: dict[str, LiftedFeatures]
    lift_seconds: float
    teacher: tuple[str, dict] = ("geometric", {})   # registry name and options (--teacher, --teacher-path)

    @cached_property
    def text(self) -> object:
        """The MiniLM text encoder (loaded on first use)."""
        return get_text_encoder("minilm")

    def split(self, train_count: int) -> tuple[list[str], list[str]]:
        """Training scans (label-free selection among rooms 0000-0003) and the unseen test scans."""
        pool = [n for n in self.names if n.startswith(TRAIN_ROOMS)]
        test = [n for n in self.names if not n.startswith(TRAIN_ROOMS)]
        picked = select_scenes(lifted_histograms([self.lifted[n].features for n in pool]), train_count)
        return [pool[i] for i in picked], test

    @cached_property
    def teacher_features(self) -> dict[str, torch.Tensor]:
        """Teacher features of every scan (geometric unless ``teacher`` says otherwise; computed once,
        cached on disk and here)."""
        teacher = get_teacher(self.teacher[0], **self.teacher[1])
        return {n: teacher_features(self.scenes[n], teacher, self.cache / "teacher") for n in self.names}

    def train(self, train: list[str], args: argparse.Namespace) -> TrainResult:
        """Train (or resume to completion from ``<cache>/run-...``) the student that ``args`` describe
        (:func:`protocol_arguments`)."""
        tfeat = self.teacher_features
        items = [DistillScene(self.scenes[n], self.lifted[n].features, tfeat[n]) for n in train]
        pairs = PairConfig(anchors=args.anchors, temperature=args.temperature,
                           micro_max_similarity=args.micro_max_similarity)
        cfg = TrainConfig(epochs=args.epochs, warmup_epochs=1, lr=args.lr, pairs=pairs,
                          semantic_weight=args.semantic_weight, save_every=args.save_every)
        name = f"run-{args.epochs}-{len(train)}-{args.semantic_weight:g}"
        name += f"-{args.preset}" if args.preset != "cpu" else ""
        name += f"-lr{args.lr:g}" if args.lr != 1e-3 else ""
        name += f"-a{args.anchors}" if args.anchors != 4096 else ""
        name += f"-t{args.temperature:g}" if args.temperature != 0.07 else ""
        name += f"-m{args.micro_max_similarity:g}" if args.micro_max_similarity is not None else ""
        overrides = {} if args.levels is None else {"levels": args.levels}
        scfg = student_config(args.preset, self.lifted[train[0]].dim, **overrides)
        name += f"-L{scfg.levels}" if scfg.levels else ""
        name += f"-{self.teacher[0]}" if self.teacher[0] != "geometric" else ""
        return train_student(items, self.cache / name, scfg, cfg, device=args.device, progress=False)


def protocol_arguments(description: str) -> argparse.ArgumentParser:
    """The command-line options every protocol benchmark takes (training settings and the cache)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--train-count", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--semantic-weight", type=float, default=0.0, help="pairs also chosen by lifted features")
    ap.add_argument("--anchors", type=int, default=4096, help="anchors per scene and iteration (at most a third "
                    "of the voxels)")
    ap.add_argument("--temperature", type=float, default=0.07, help="InfoNCE temperature (default 0.07, as upstream)")
    ap.add_argument("--preset", choices=("cpu", "upstream"), default="cpu", help="student size (default cpu)")
    ap.add_argument("--levels", type=int, help="coarse levels of a U-Net student (default: the preset's)")
    ap.add_argument("--micro-max-similarity", type=float, help="reject micro negatives the pair features find more "
                    "similar than this (default: keep all, as upstream)")
    ap.add_argument("--save-every", type=int, default=1, help="validate and checkpoint every this many epochs")
    ap.add_argument("--device", default="cpu", help="where the student trains (cpu, cuda)")
    ap.add_argument("--cache", default=str(DEFAULT_CACHE))
    ap.add_argument("--teacher", default="geometric", help="teacher registry name (geometric, sonata, ...)")
    ap.add_argument("--teacher-path", help="the teacher's path option, e.g. sonata.pth for --teacher sonata")
    return ap


def teacher_of(args: argparse.Namespace) -> tuple[str, dict]:
    """``(name, options)`` of the teacher the command line asks for."""
    return args.teacher, ({"path": args.teacher_path} if args.teacher_path else {})


def load_protocol(cache: Path = DEFAULT_CACHE) -> Protocol:
    logging.basicConfig(level=logging.WARNING)
    cache.mkdir(parents=True, exist_ok=True)
    class_emb = class_embeddings(cache)
    names = sorted(p.name[:-len("_vert.npy")] for p in DATA.glob("*_vert.npy"))
    t0 = time.perf_counter()
    scenes = {n: load_scan(DATA / n).scene for n in names}
    lifted = {n: lifted_for(s, class_emb, cache) for n, s in scenes.items()}
    return Protocol(cache, names, scenes, lifted, time.perf_counter() - t0)
