"""What the command line runs, as library functions: each ``geopurify`` subcommand is one call here.

Scan lists, encoder specifications given by name, and the files a command writes live here, so that the
CLI only maps flags onto these functions (and scripts can call them directly).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._fileio import atomic_paths, file_digest, output_path, safe_name
from .encoders import ImageEncoder, TextEncoder, get_encoder, get_text_encoder
from .errors import InputError
from .evaluation import Evaluation, evaluate
from .io import Scan, load_scan
from .io.arrays import load_npy
from .io.layouts import is_gaussian_splat, write_splat_labels
from .labels import get_label_set
from .lifting import LiftConfig, LiftedFeatures, import_features, lift_scan
from .segment import PoolingConfig, Segmenter
from .student import DistillScene, TrainConfig, TrainResult, load_student, prepare_scene, train_student
from .student.data import lifted_path
from .student.network import student_config
from .student.scene_selection import label_histograms, lifted_histograms, select_scenes
from .teachers import get_teacher
from .viz import label_colors, label_panel, write_label_ply

log = logging.getLogger("geopurify")


def scan_paths(items: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Scan arguments: paths, or ``.txt`` files listing one path per line (relative to the file, ``#`` comments)."""
    out: list[str] = []
    for item in items:
        p = Path(item)
        if p.suffix == ".txt" and p.is_file():
            out += [str(p.parent / line.strip()) for line in p.read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
        else:
            out.append(str(item))
    return out


def open_scan(path: str | os.PathLike[str], *, layout: str | None = None, label_set: str | None = None,
              frames: str | None = None, frame_step: int | None = None) -> Scan:
    """:func:`~geopurify.io.load_scan` with only the options that were given."""
    opts = {k: v for k, v in (("label_set", label_set), ("frames", frames), ("frame_step", frame_step)) if v}
    return load_scan(path, layout=layout, **opts)


def build_text_encoder(name: str | None, source: str | None = None) -> TextEncoder | None:
    """A text encoder by registry name with an optional ``source=`` (None: no text encoder)."""
    if name is None:
        return None
    return get_text_encoder(name, **({"source": source} if source else {}))


@dataclass(frozen=True)
class EncoderSpec:
    """An image encoder (and optionally a text encoder) by registry name, built on demand.

    Attributes:
        name: image encoder (``clip-hf``, ``siglip``, ``mask-embed``, ``sam3``, ``precomputed``, ``masks`` or a plugin).
        source: its ``source=`` (folder, file pattern or hub id).
        options: further keyword options of its factory.
        text_encoder: a text encoder to use instead of the encoder's own (passed as ``text_encoder=``).
        text_source: that text encoder's ``source=``.
    """

    name: str
    source: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    text_encoder: str | None = None
    text_source: str | None = None

    def build(self, *, source: str | None = None, text: TextEncoder | None = None) -> ImageEncoder:
        """The encoder; ``source`` replaces :attr:`source`, ``text`` is a text encoder already built from
        :attr:`text_encoder` (a batch worker builds it once for all scans)."""
        opts = dict(self.options)
        source = source if source is not None else self.source
        if source is not None:
            opts["source"] = source
        text = text if text is not None else build_text_encoder(self.text_encoder, self.text_source)
        if text is not None:
            opts["text_encoder"] = text
        return get_encoder(self.name, **opts)


def lift(scan: Scan, encoder: ImageEncoder, *, vocabulary: list[str] | None = None,
         config: LiftConfig = LiftConfig(), progress: bool = True) -> LiftedFeatures:
    """``geopurify lift``: :func:`~geopurify.lifting.lift_scan` with the encoder's own text encoder."""
    return lift_scan(scan.scene, scan.frames, encoder, vocabulary=vocabulary, config=config, progress=progress)


def import_lifted(scan: Scan, importer: str, source: str | os.PathLike[str],
                  config: LiftConfig = LiftConfig()) -> LiftedFeatures:
    """``geopurify lift --importer NAME``: features lifted by another tool."""
    return import_features(importer, source, scan.scene, fill_unseen=config.fill_unseen)


def read_text_embeddings(path: str | os.PathLike[str]) -> torch.Tensor:
    """``(C, D)`` text embeddings from an ``.npy`` file.

    Raises:
        InputError: unreadable file or not a 2-D array.
    """
    path = Path(path)
    emb = torch.from_numpy(load_npy(path).astype(np.float32))
    if emb.dim() != 2:
        raise InputError(f"text embeddings must be (C, D), got {tuple(emb.shape)}", path)
    return emb


def train(scans: Sequence[str], features: str | os.PathLike[str], out: str | os.PathLike[str], *,
          teacher: str = "geometric", teacher_options: dict[str, Any] | None = None, preset: str = "cpu",
          student_overrides: dict[str, Any] | None = None, config: TrainConfig = TrainConfig(),
          val: Sequence[str] | None = None, select: int | None = None, select_by: str = "lifted",
          encoder: ImageEncoder | None = None, vocabulary: list[str] | None = None,
          lift_config: LiftConfig = LiftConfig(), layout: str | None = None, label_set: str | None = None,
          device: str = "cpu", resume: bool = True, progress: bool = True) -> TrainResult:
    """``geopurify train``: prepare the scans (lifting missing features with ``encoder``), optionally
    select ``select`` diverse ones, and train a student into the run folder ``out``."""
    out = Path(out)
    teacher_obj = get_teacher(teacher, **(teacher_options or {}))

    lift_missing = None
    if encoder is not None:
        enc = encoder

        def lift_missing(scan: Scan) -> LiftedFeatures:
            return lift(scan, enc, vocabulary=vocabulary, config=lift_config, progress=progress)

    def prepare(paths: Sequence[str]) -> list[DistillScene]:
        opts = {"label_set": label_set} if label_set else {}
        return [prepare_scene(p, features, teacher_obj, out / "cache", layout=layout, lift=lift_missing, **opts)
                for p in scan_paths(paths)]
    scenes = prepare(scans)
    if select:
        scenes = _select(scenes, select, select_by)
    scfg = student_config(preset, scenes[0].semantic.shape[1], **(student_overrides or {}))
    return train_student(scenes, out, scfg, config, val_scenes=prepare(val) if val else None, device=device,
                         resume=resume, progress=progress)


def _select(scenes: list[DistillScene], count: int, by: str) -> list[DistillScene]:
    if by == "labels":
        missing = [s.name for s in scenes if s.scene.labels is None]
        if missing:
            raise InputError(f"--select-by labels needs labelled scenes; unlabelled: {', '.join(missing)}")
        hist = label_histograms([s.scene.labels for s in scenes], scenes[0].scene.label_set.num_classes)
    else:
        hist = lifted_histograms([s.semantic for s in scenes])
    picked = select_scenes(hist, count)
    log.info("selected %d of %d scenes (%s): %s", len(picked), len(scenes), by, ", ".join(scenes[i].name for i in picked))
    return [scenes[i] for i in picked]


@dataclass(frozen=True)
class SegmentOutput:
    """What :func:`segment` wrote: ``labels`` (``.npy``), ``ply`` and ``summary`` (``.json``), and the summary."""

    labels: Path
    ply: Path
    summary: Path
    info: dict[str, Any]


def segment(scan: Scan, segmenter: Segmenter, vocabulary: list[str], out: str | os.PathLike[str], *,
            lifted: LiftedFeatures | None = None, text_embeddings: torch.Tensor | None = None,
            purify: bool = True, other_threshold: float | None = None, pictures: bool = False,
            progress: bool = True) -> SegmentOutput:
    """``geopurify segment``: label every point with ``vocabulary`` (lifting with the segmenter's encoder
    when no ``lifted`` features are given) and write ``<scene>_labels.npy`` (vocabulary index, -1 = other),
    a coloured ``<scene>_labels.ply``, with ``pictures`` ``<scene>_labels.png`` (colour | ground truth when
    labelled | result, with a legend: :func:`geopurify.viz.label_panel`) and ``<scene>_summary.json`` into
    ``out``. They are moved into place together, the summary last; it records the others' sizes and SHA-256,
    so a summary that does not match them marks an interrupted write."""
    scene = scan.scene
    if text_embeddings is not None and len(text_embeddings) != len(vocabulary):
        raise InputError(f"{len(text_embeddings)} text embeddings for a vocabulary of {len(vocabulary)} classes")
    segmenter.set_scan(scan, lifted=lifted, vocabulary=vocabulary, progress=progress)
    result = segmenter.query(vocabulary, text_embeddings=text_embeddings, purify=purify, fast=True,
                             other_threshold=other_threshold)
    out = Path(out)
    labels = result.labels.numpy().astype(np.int64)
    npy, ply, summary_path = (output_path(out, f"{scene.name}{suffix}")
                              for suffix in ("_labels.npy", "_labels.ply", "_summary.json"))
    counts = np.bincount(labels[labels >= 0], minlength=len(vocabulary))
    p = segmenter.pooling
    student = segmenter.student
    info = {"scene": scene.name, "num_points": scene.num_points, "purified": purify,
            "student": None if student is None or not purify else {"voxel_size": student.voxel_size,
                                                                   "features": student.features.to_dict()},
            "vocabulary": vocabulary, "points_per_class": {v: int(c) for v, c in zip(vocabulary, counts)},
            "other": int((labels < 0).sum()),
            "pooling": {"k": p.k, "steps": p.steps, "sharpen": p.sharpen, "alpha": p.alpha}}
    # the three files move into place together, the summary (with the others' sizes and checksums) last
    png = output_path(out, f"{scene.name}_labels.png")
    # a Gaussian splat also gets its labels written back into a copy of the splat file
    splat = None if scan.source_index is None or not is_gaussian_splat(scan.path) else \
        output_path(out, f"{scene.name}_labels_splat.ply")
    written = (npy, ply) + ((png,) if pictures else ()) + ((splat,) if splat is not None else ())
    with atomic_paths(*written, summary_path) as tmps:
        with open(tmps[0], "wb") as fh:
            np.save(fh, labels)
        write_label_ply(tmps[1], scene.coords.numpy(), labels, len(vocabulary))
        if pictures:
            label_panel(tmps[2], scene, labels, vocabulary, "purified" if purify else "direct projection")
        if splat is not None:
            write_splat_labels(scan.path, tmps[len(written) - 1], labels, scan.source_index,
                               label_colors(labels, len(vocabulary)))
        info["files"] = {p.name: file_digest(t) for p, t in zip(written, tmps)}
        tmps[-1].write_text(json.dumps(info, indent=1), encoding="utf-8")
    return SegmentOutput(npy, ply, summary_path, info)


def evaluate_scans(scans: Sequence[str], features: str | os.PathLike[str], segmenter: Segmenter, *,
                   label_set: str | None = None, layout: str | None = None, purify: bool = True,
                   text_embeddings: torch.Tensor | None = None) -> Evaluation:
    """``geopurify evaluate``: direct projection (and purification) over labelled scans whose lifted
    features are ``<features>/<scene>.npz``; confusion matrices summed over all scans."""
    opts = {"label_set": label_set} if label_set else {}

    def items() -> Iterator[tuple[Any, LiftedFeatures]]:
        for p in scan_paths(scans):
            scene = load_scan(p, layout=layout, **opts).scene
            yield scene, LiftedFeatures.load(lifted_path(features, scene.name), scene=scene)
    methods = ("direct", "purified") if purify else ("direct",)
    return evaluate(items(), get_label_set(label_set or "scannet20"), segmenter=segmenter,
                    student=segmenter.student, text_embeddings=text_embeddings, methods=methods)


def segmenter_for(student: str | os.PathLike[str] | None, *, purify: bool = True, encoder: ImageEncoder | None = None,
                  text_encoder: TextEncoder | None = None, pooling: PoolingConfig = PoolingConfig(),
                  lift_config: LiftConfig = LiftConfig(), device: str = "cpu") -> Segmenter:
    """A :class:`Segmenter` from a checkpoint path (None, or ``purify=False``: no student)."""
    model = load_student(student, device=device) if student and purify else None
    return Segmenter(model, encoder=encoder, text_encoder=text_encoder, pooling=pooling, lift=lift_config,
                     device=device)


def features_for(features: str | os.PathLike[str], scene_name: str, many: bool) -> Path:
    """The lifted features of a scan: ``<features>/<scene>.npz`` in a folder, or ``features`` itself (one scan)."""
    p = Path(features)
    if p.is_dir():
        return lifted_path(p, scene_name)
    if many:
        raise InputError("several scans need --features to be a folder of <scene>.npz", p)
    return p


def query_scans(scans: Sequence[str], texts: Sequence[str], segmenter: Segmenter, out: str | os.PathLike[str], *,
                features: str | os.PathLike[str] | None = None, purify: bool = True, top_k: int = 100,
                layout: str | None = None, label_set: str | None = None, progress: bool = True) -> list[Path]:
    """``geopurify query``: free-text queries on scans, one pooling per scan for all of them. Writes, per scan,
    ``<out>/<scene>/`` with per query ``qNN_<text>.npy`` (``(N,) float32`` relevance in [0, 1], as
    :meth:`Segmenter.heatmap`), ``qNN_<text>.ply`` (heat colours and a ``score`` property) and ``qNN_<text>.json``
    (top-k points and their bounding box), plus ``queries.json`` listing them; one scan's files move into
    place together. Lifts with the segmenter's encoder when no ``features`` are given. Returns the scan folders."""
    from .segment import top_points
    from .viz import write_heat_ply

    if not texts:
        raise InputError("give at least one --text query")
    paths, folders = scan_paths(scans), []
    emb = segmenter.embed_texts(list(texts))                       # one text-encoder call for all scans
    for p in paths:
        scan = open_scan(p, layout=layout, label_set=label_set)
        scene = scan.scene
        lifted = (LiftedFeatures.load(features_for(features, scene.name, len(paths) > 1), scene=scene)
                  if features is not None else None)
        segmenter.set_scan(scan, lifted=lifted, progress=progress)
        heats = segmenter.heatmaps(list(texts), text_embeddings=emb, purify=purify)
        folder = output_path(out, safe_name(scene.name))
        stems = [f"q{i:02d}_{safe_name(t)[:40]}" for i, t in enumerate(texts)]
        names = [f"{s}{ext}" for s in stems for ext in (".npy", ".ply", ".json")] + ["queries.json"]
        index = {"scene": scene.name, "num_points": scene.num_points, "purified": purify, "queries": []}
        with atomic_paths(*(folder / n for n in names)) as tmps:
            for i, (text, heat) in enumerate(zip(texts, heats)):
                t_npy, t_ply, t_json = tmps[3 * i: 3 * i + 3]
                with open(t_npy, "wb") as fh:
                    np.save(fh, heat.numpy().astype(np.float32))
                write_heat_ply(t_ply, scene.coords.numpy(), heat.numpy())
                hits = top_points(text, heat, scene.coords, top_k).to_dict(scene.coords)
                t_json.write_text(json.dumps({"scene": scene.name, **hits}, indent=1), encoding="utf-8")
                index["queries"].append({"query": text, "files": names[3 * i: 3 * i + 3],
                                         "bounding_box": hits["bounding_box"]})
            tmps[-1].write_text(json.dumps(index, indent=1), encoding="utf-8")
        log.info("%s: %d queries -> %s", scene.name, len(texts), folder)
        folders.append(folder)
    return folders
