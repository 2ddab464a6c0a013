"""The demo: the whole pipeline on one labelled scene, with a report, pictures and a 3D viewer.

``geopurify demo`` runs it on a generated furnished room (nothing to download); ``--scene PATH`` on any
labelled scan. The 2D predictions are **simulated** (:mod:`geopurify.sim.mask_model`: rendered views,
masks with realistic errors, named by class) because no vision-language weights exist on a fresh
machine; everything after them is the real pipeline: MiniLM text embeddings, consensus lifting, the
geometric teacher, a short label-free student training, Geometry-Guided Pooling, evaluation and
free-text queries.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._fileio import atomic_write_text, output_path
from ..evaluation.evaluate import evaluate, predictions_to_ids
from ..io.ply import write_ply
from ..io.scene import Scene
from ..segment.segmenter import Segmenter
from ..student.config import TrainConfig
from ..student.data import DistillScene
from ..student.distill import PairConfig
from ..student.network import student_config
from ..student.train import train_student
from ..teachers import get_teacher, teacher_features
from ..viz import heat_colors, label_colors, label_legend, write_html_viewer
from ..viz.pictures import annotate, render_view, save_png, write_panel
from .mask_model import SCANNET_SIM_V1, simulate_lifting
from .views import SCANNET_K_320

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """Settings of :func:`run_demo`.

    Attributes:
        views: rendered views of the scene.
        epochs: student training epochs.
        anchors: anchors per training iteration.
        lr: learning rate.
        queries: free-text queries answered in the report.
        seed: seed of the room, the views, the simulated mask model and training.
        density: points per square metre of the generated room (when no scene is given).
    """

    views: int = 40
    epochs: int = 8
    anchors: int = 2048
    lr: float = 1e-3
    queries: tuple[str, ...] = ("couch", "somewhere to sit")
    seed: int = 0
    density: float = 300.0


@dataclass
class DemoResult:
    """What :func:`run_demo` wrote; mIoU over the classes present in the scene, and (``_all``) over all
    evaluated classes as upstream (an absent class counting 0)."""

    report: Path
    files: list[Path]
    direct_miou: float
    purified_miou: float
    direct_miou_all: float = float("nan")
    purified_miou_all: float = float("nan")


def _text_encoder():
    """MiniLM when installed (extra ``minilm``), else None (fixed random class prototypes)."""
    from ..encoders import get_text_encoder
    from ..errors import MissingDependencyError
    try:
        return get_text_encoder("minilm")
    except MissingDependencyError as exc:
        log.warning("%s; using fixed random class prototypes instead of MiniLM text embeddings", exc)
        return None


def run_demo(out: str | Path, scene: Scene, config: DemoConfig = DemoConfig(), progress: bool = True) -> DemoResult:
    """Run the pipeline on a labelled ``scene`` and write the report and pictures into ``out``."""
    from ..encoders import encode_vocabulary
    from .noisy import class_prototypes

    if scene.labels is None or scene.label_set is None:
        raise ValueError(f"the demo needs a labelled scene; {scene.name!r} has no labels")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ls = scene.label_set
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    def tick(name: str, t0: float) -> float:
        timings[name] = time.perf_counter() - t0
        log.info("%s: %.1f s", name, timings[name])
        return time.perf_counter()

    t = time.perf_counter()
    text = _text_encoder()
    class_emb = encode_vocabulary(text, list(ls.class_names)) if text is not None \
        else class_prototypes(ls.num_classes, 64, seed=config.seed)
    lifted, views = simulate_lifting(scene, class_emb, noise=SCANNET_SIM_V1, num_views=config.views,
                                     seed=config.seed, progress=progress)
    t = tick("render + simulated 2D segmenter + lifting", t)

    teacher = teacher_features(scene, get_teacher("geometric"), out / "run" / "cache")
    item = DistillScene(scene, lifted.features, teacher)
    tcfg = TrainConfig(epochs=config.epochs, warmup_epochs=1, lr=config.lr, seed=config.seed,
                       pairs=PairConfig(anchors=config.anchors))
    result = train_student([item], out / "run", student_config("cpu", lifted.dim), tcfg, progress=progress)
    t = tick("teacher + student training", t)

    seg = Segmenter(text_encoder=text)
    scored = ls.scored.nonzero().flatten()
    names = [ls.class_names[c] for c in scored.tolist()]
    texts, emb = (names, None) if text is not None else (None, class_emb[scored])
    ev = evaluate([(scene, lifted)], ls, segmenter=seg, student=result.student, text_embeddings=emb)
    direct = seg.query(texts, text_embeddings=emb, purify=False)
    purified = seg.query(texts, text_embeddings=emb, fast=True)
    heats = {q: seg.heatmap(q) for q in config.queries} if text is not None else {}
    t = tick("pooling + evaluation + queries", t)

    classes = scored.tolist()
    d, p = ev.scores("direct"), ev.scores("purified")
    dp, pp = (ev.matrices[m]["all"].summary(ls, present_only=True) for m in ("direct", "purified"))
    n_present = sum(1 for c in d.per_class.values() if c["points"] > 0)
    to_ids = (predictions_to_ids(direct.labels, classes).numpy(), predictions_to_ids(purified.labels, classes).numpy())
    layers = {"colour": (scene.colors.numpy() * 255).round().astype(np.uint8),
              "ground truth": label_colors(scene.labels, ls.num_classes),
              "direct": label_colors(to_ids[0], ls.num_classes), "purified": label_colors(to_ids[1], ls.num_classes)}
    layers.update({f"query: {q}": heat_colors(h.numpy()) for q, h in heats.items()})
    names_all = list(ls.class_names)
    legends = {"ground truth": label_legend(scene.labels, names_all), "direct": label_legend(to_ids[0], names_all),
               "purified": label_legend(to_ids[1], names_all)}
    titles = {"colour": f"{scene.name}: colour", "ground truth": f"{scene.name}: ground truth ({ls.name})",
              "direct": f"{scene.name}: direct projection, {100 * dp.miou:.1f} mIoU",
              "purified": f"{scene.name}: purified (GeoPurify), {100 * pp.miou:.1f} mIoU"}
    titles.update({k: f"{scene.name}: {k} (relevance)" for k in layers if k.startswith("query")})
    files = _pictures(out, scene, views, layers, titles, legends,
                      f"{scene.name}: direct {100 * dp.miou:.1f} vs purified {100 * pp.miou:.1f} mIoU "
                      f"over the {n_present} classes present")
    ply = output_path(out, f"{scene.name}_purified.ply")
    write_ply(ply, scene.coords.numpy(), rgb=layers["purified"], scalars={"label": to_ids[1].astype(np.int32)})
    html = out / "viewer.html"
    write_html_viewer(html, scene.coords, layers, title=f"geopurify demo: {scene.name}", legends=legends,
                      titles=titles)
    files += [ply, html]
    tick("pictures, PLY, viewer", t)

    absent = [n for n, c in d.per_class.items() if c["points"] == 0]
    lines = [f"# geopurify demo: {scene.name}", "",
             f"{scene.num_points:,} points, {len(views)} rendered views, label set {ls.name} "
             f"({int(ls.scored.sum())} evaluated classes, {n_present} of them in this scene), {lifted.dim}-d features "
             f"({'MiniLM text embeddings' if text is not None else 'random class prototypes'}).", "",
             "**The 2D predictions are simulated** (protocol scannet-sim v1: rendered views segmented with "
             "realistic errors, see `geopurify.sim.mask_model`); lifting, distillation, pooling, evaluation and "
             "queries are the real pipeline. Plug a real CLIP-family model with `geopurify lift --encoder clip-hf`, "
             "or precomputed features with `--encoder precomputed`.", "",
             f"Over the {n_present} classes present in the scene: direct projection **{100 * dp.miou:.1f} mIoU**; "
             f"purified: **{100 * pp.miou:.1f} mIoU** ({100 * (pp.miou - dp.miou):+.1f}). Numbers come from this run.",
             "",
             f"Upstream protocol ({int(ls.scored.sum())} classes, an absent class counts IoU 0, comparable with "
             f"published ScanNet figures only on full scans): direct projection {100 * d.miou:.1f} mIoU, purified "
             f"{100 * p.miou:.1f} mIoU." + (f" Absent here: {', '.join(absent)}." if absent else ""), "",
             "`view00_panel.png` shows colour | ground truth | direct | purified side by side.", "", ev.table(), ""]
    if heats:
        lines += ["## Free-text queries", "", "| query | top ground-truth classes among the 5% most relevant points |",
                  "|---|---|"]
        for q, h in heats.items():
            top = h >= torch.quantile(h, 0.95)
            lab = scene.labels[top]
            cnt = torch.bincount(lab[lab >= 0], minlength=ls.num_classes)
            best = [f"{ls.class_names[c]} ({100 * int(cnt[c]) / max(1, int(top.sum())):.0f}%)"
                    for c in cnt.argsort(descending=True)[:3].tolist() if cnt[c] > 0]
            lines.append(f"| {q} | {', '.join(best)} |")
        lines.append("")
    lines += ["## Timings (s)", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
    lines += [f"| total | {time.perf_counter() - t_start:.1f} |", "", "## Files", ""]
    lines += [f"- `{f.name}`" for f in files]
    report = out / "report.md"
    atomic_write_text(report, "\n".join(lines) + "\n")
    return DemoResult(report, files, dp.miou, pp.miou, d.miou, p.miou)


PANEL = ("colour", "ground truth", "direct", "purified")


def _pictures(out: Path, scene: Scene, views: list, layers: dict[str, np.ndarray], titles: dict[str, str],
              legends: dict[str, list], panel_title: str) -> list[Path]:
    """Per view: one titled PNG per layer (with its legend, or a colour bar for a query) and the panel
    colour | ground truth | direct | purified with one legend."""
    files = []
    for i in (0, len(views) // 2):
        pose = views[i].frame.cam_to_world
        pose = pose.numpy() if isinstance(pose, torch.Tensor) else np.asarray(pose)
        imgs = {name: render_view(scene.coords, cols, pose, SCANNET_K_320) for name, cols in layers.items()}
        for name, img in imgs.items():
            path = out / f"view{i:02d}_{name.replace(': ', '_').replace(' ', '_')}.png"
            pic = annotate(img, titles.get(name, name), legends.get(name),
                           "relevance" if name.startswith("query") else None)
            save_png(path, pic)
            files.append(path)
        seen = {n: c for k in ("ground truth", "direct", "purified") for n, c in legends[k]}
        panel = out / f"view{i:02d}_panel.png"
        write_panel(panel, [(k, imgs[k]) for k in PANEL], panel_title,
                    [(n, c) for n, c in label_legend(np.arange(len(scene.label_set.class_names)),
                                                     list(scene.label_set.class_names)) if n in seen])
        files.append(panel)
    return files
