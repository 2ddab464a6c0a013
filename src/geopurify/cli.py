"""Command-line interface: thin wrappers over the library.

``geopurify --help`` lists the commands; each maps its flags onto one library call. Problems with
the input print one line (``geopurify: error: <file>: <problem>``) and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import GeopurifyError, InputError

log = logging.getLogger("geopurify")


def _cmd_info(args: argparse.Namespace) -> int:
    from .summary import describe_scan

    print(describe_scan(_load(args)))
    return 0


def _load(args: argparse.Namespace):
    from .datasets import load_scan

    opts: dict[str, object] = {}
    if getattr(args, "label_set", None):
        opts["label_set"] = args.label_set
    if getattr(args, "frames", None):
        opts["frames"] = args.frames
    if getattr(args, "frame_step", None) and getattr(args, "command", "") == "info":
        opts["frame_step"] = args.frame_step
    return load_scan(args.scene, layout=args.layout, **opts)


def _cmd_lift(args: argparse.Namespace) -> int:
    from .labels import resolve_vocabulary
    from .lifting import LiftConfig, lift_scan

    scan = _load(args)
    config = LiftConfig(fusion=args.fusion, depth_tolerance=args.depth_tolerance, border=args.border,
                        frame_step=args.frame_step or 1)
    vocab = resolve_vocabulary(args.vocab) if args.vocab else None
    lifted = lift_scan(scan.scene, scan.frames, args.encoder, model=args.model, vocabulary=vocab,
                       text_encoder=args.text_encoder, text_model=args.text_model, config=config)
    lifted.save(args.out)
    seen = lifted.seen
    views = lifted.view_counts[seen].float().mean() if bool(seen.any()) else 0.0
    print(f"{scan.scene.name}: {lifted.dim}-d {args.encoder} features for {lifted.num_points:,} points; "
          f"seen by frames: {int(seen.sum()):,} ({100 * float(seen.float().mean()):.1f}%), "
          f"mean views per seen point: {float(views):.1f}; wrote {args.out}")
    return 0


def _scene_paths(items: Sequence[str]) -> list[str]:
    """Scene arguments: paths, or ``.txt`` files listing one path per line (relative to the file)."""
    out: list[str] = []
    for item in items:
        p = Path(item)
        if p.suffix == ".txt" and p.is_file():
            out += [str(p.parent / line.strip()) for line in p.read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
        else:
            out.append(item)
    return out


def _cmd_train(args: argparse.Namespace) -> int:
    from .distill import PairConfig
    from .selection import label_histograms, lifted_histograms, select_scenes
    from .student import student_config
    from .teachers import get_teacher
    from .train import TrainConfig, prepare_scene, train_student

    out = Path(args.out)
    teacher_opts = {"path": args.teacher_path} if args.teacher_path else {}
    teacher = get_teacher(args.teacher, **teacher_opts)
    lift = None
    if args.encoder:
        from .labels import resolve_vocabulary
        from .lifting import lift_scan

        vocab = resolve_vocabulary(args.vocab) if args.vocab else None

        def lift(scan):  # noqa: ANN001, ANN202 - Scan -> LiftedFeatures
            return lift_scan(scan.scene, scan.frames, args.encoder, model=args.model, vocabulary=vocab,
                             text_encoder=args.text_encoder, text_model=args.text_model)
    opts = {"label_set": args.label_set} if args.label_set else {}

    def prepare(paths: list[str]):  # noqa: ANN202
        return [prepare_scene(p, args.features, teacher, out / "cache", layout=args.layout, lift=lift, **opts)
                for p in paths]
    scenes = prepare(_scene_paths(args.scenes))
    if args.select:
        if args.select_by == "labels":
            missing = [s.name for s in scenes if s.scene.labels is None]
            if missing:
                raise InputError(f"--select-by labels needs labelled scenes; unlabelled: {', '.join(missing)}")
            hist = label_histograms([s.scene.labels for s in scenes], scenes[0].scene.label_set.num_classes)
        else:
            hist = lifted_histograms([s.semantic for s in scenes])
        picked = select_scenes(hist, args.select)
        log.info("selected %d of %d scenes (%s): %s", len(picked), len(scenes), args.select_by,
                 ", ".join(scenes[i].name for i in picked))
        scenes = [scenes[i] for i in picked]
    val = prepare(_scene_paths(args.val)) if args.val else None
    pairs = PairConfig(anchors=args.anchors, micro_max_similarity=args.micro_max_similarity)
    config = TrainConfig(epochs=args.epochs, warmup_epochs=args.warmup_epochs, lr=args.lr, seed=args.seed,
                         augment=not args.no_augment, pairs=pairs, semantic_weight=args.semantic_weight,
                         save_every=args.save_every)
    overrides = {k: v for k, v in (("norm", args.norm), ("levels", args.levels)) if v is not None}
    scfg = student_config(args.preset, scenes[0].semantic.shape[1], **overrides)
    result = train_student(scenes, out, scfg, config, val_scenes=val, device=args.device,
                           resume=not args.restart, progress=not args.no_progress)
    last = result.history[-1] if result.history else {}
    print(f"trained on {len(scenes)} scenes for {config.epochs} epochs: final loss {last.get('loss', float('nan')):.4f}, "
          f"best epoch {result.best_epoch + 1} (validation loss {min(h['val_loss'] for h in result.history):.4f}); "
          f"student: {out / 'best.pt'}")
    return 0


def _segmenter(args: argparse.Namespace):
    """A Segmenter and, when known, the vocabulary's text embeddings, from the shared query flags."""
    import numpy as np
    import torch

    from .encoders import get_text_encoder
    from .pooling import PoolingConfig
    from .query import Segmenter

    pooling = PoolingConfig(k=args.k, steps=args.steps, sharpen=args.sharpen, alpha=args.alpha)
    text_enc = None
    if args.text_encoder:
        opt = {"model": args.text_model} if args.text_encoder == "clip-hf" else {"model_dir": args.text_model}
        text_enc = get_text_encoder(args.text_encoder, **opt)
    emb = None
    if args.text_embeddings:
        path = Path(args.text_embeddings)
        try:
            emb = torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read text embeddings ({exc})", path) from None
        if emb.dim() != 2:
            raise InputError(f"text embeddings must be (C, D), got {tuple(emb.shape)}", path)
    if text_enc is None and emb is None:
        raise InputError("give --text-encoder (minilm, clip-hf) or --text-embeddings to embed the vocabulary")
    return Segmenter(text_encoder=text_enc, pooling=pooling, device=args.device), emb


def _student(args: argparse.Namespace):
    from .student import load_student
    return load_student(args.student, device=args.device) if args.student and not args.no_purify else None


def _cmd_segment(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from ._fileio import atomic_path, atomic_write_text
    from .io.ply import write_label_ply
    from .labels import resolve_vocabulary
    from .lifting import LiftedFeatures

    scan = _load(args)
    scene = scan.scene
    lifted = LiftedFeatures.load(args.features, num_points=scene.num_points)
    vocab = resolve_vocabulary(args.vocab)
    seg, emb = _segmenter(args)
    if emb is not None and len(emb) != len(vocab):
        raise InputError(f"{len(emb)} text embeddings for a vocabulary of {len(vocab)} classes", args.text_embeddings)
    seg.set_scene(scene, lifted, _student(args))
    purify = not args.no_purify
    result = seg.query(vocab, text_embeddings=emb, purify=purify, other_threshold=args.other_threshold)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    labels = result.labels.numpy().astype(np.int64)
    with atomic_path(out / f"{scene.name}_labels.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, labels)
    write_label_ply(out / f"{scene.name}_labels.ply", scene.coords.numpy(), labels, len(vocab))
    counts = np.bincount(labels[labels >= 0], minlength=len(vocab))
    summary = {"scene": scene.name, "num_points": scene.num_points, "purified": purify,
               "student": args.student if purify else None, "vocabulary": vocab,
               "points_per_class": {v: int(c) for v, c in zip(vocab, counts)}, "other": int((labels < 0).sum()),
               "pooling": {"k": args.k, "steps": args.steps, "sharpen": args.sharpen, "alpha": args.alpha}}
    atomic_write_text(out / f"{scene.name}_summary.json", json.dumps(summary, indent=1))
    top = sorted(summary["points_per_class"].items(), key=lambda kv: -kv[1])[:5]
    print(f"{scene.name}: {'purified' if purify else 'direct projection'}; "
          + ", ".join(f"{k} {v:,}" for k, v in top) + f"; wrote {out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .datasets import load_scan
    from .evaluate import evaluate
    from .labels import get_label_set
    from .lifting import LiftedFeatures
    from .train import lifted_path

    seg, emb = _segmenter(args)
    student = _student(args)
    opts = {"label_set": args.label_set} if args.label_set else {}

    def items():
        for p in _scene_paths(args.scenes):
            scene = load_scan(p, layout=args.layout, **opts).scene
            yield scene, LiftedFeatures.load(lifted_path(args.features, scene.name), num_points=scene.num_points)
    label_set = get_label_set(args.label_set or "scannet20")
    methods = ("direct",) if student is None and args.no_purify else ("direct", "purified")
    ev = evaluate(items(), label_set, segmenter=seg, student=student, text_embeddings=emb, methods=methods)
    print(f"{len(ev.scenes)} scenes, {label_set.name} ({int(label_set.scored.sum())} classes)\n")
    print(ev.table())
    if args.out:
        ev.save(args.out)
    return 0


def _query_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--student", help="student checkpoint (best.pt); without it pooling uses uniform weights")
    p.add_argument("--no-purify", action="store_true", help="direct projection only (no pooling)")
    p.add_argument("--text-encoder", help="embeds the vocabulary: minilm, clip-hf (must match the 2D encoder)")
    p.add_argument("--text-model", help="folder of the text encoder's model, if it needs one")
    p.add_argument("--text-embeddings", help=".npy (C, D) unit text embeddings, one row per vocabulary class")
    p.add_argument("--k", type=int, default=96, help="neighbours per voxel (default 96)")
    p.add_argument("--steps", type=int, default=19, help="pooling products T (default 19)")
    p.add_argument("--sharpen", type=float, default=20.0, help="affinity sharpening (default 20)")
    p.add_argument("--alpha", type=float, default=0.0, help="residual weight of the input features (default 0)")
    p.add_argument("--layout", help="force a scan layout")
    p.add_argument("--label-set", help="label set of the scans' labels")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, run_demo
    from .sim import make_room

    if args.scene:
        scene = _load(args).scene
    else:
        scene = make_room(seed=args.seed, density=args.density)
    config = DemoConfig(views=args.views, epochs=args.epochs, seed=args.seed)
    result = run_demo(args.out, scene, config, progress=not args.no_progress)
    print(f"{scene.name}: direct projection {100 * result.direct_miou:.1f} mIoU, purified "
          f"{100 * result.purified_miou:.1f} mIoU (simulated 2D predictions); report: {result.report}; "
          f"viewer: {Path(args.out) / 'viewer.html'}")
    return 0


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geopurify", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="summarise a scan: points, frames, label histogram, bounding box")
    p.add_argument("scene", help="scan file or folder (any layout geopurify reads)")
    p.add_argument("--layout", help="force a layout instead of detecting it")
    p.add_argument("--label-set", help="label set of the scan's labels (scannet20, scannet200, matterport21, nyu40)")
    p.add_argument("--frames", help="frames folder for a PLY scan (ScanNet export or 7-Scenes layout)")
    p.add_argument("--frame-step", type=int, help="keep every N-th frame")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("lift", help="lift 2D features from the scan's frames onto its points")
    p.add_argument("scene", help="scan file or folder")
    p.add_argument("--encoder", required=True, help="clip-hf, precomputed, masks, openscene (or a plugin)")
    p.add_argument("--model", help="encoder input: CLIP folder, feature folder, mask folder or OpenScene .pt file")
    p.add_argument("--vocab", help="vocabulary for consensus fusion: a label set (scannet20, ...), a file "
                   "with one class per line, or 'chair,table,...'")
    p.add_argument("--text-encoder", help="text encoder for the vocabulary (minilm, clip-hf)")
    p.add_argument("--text-model", help="folder of the text encoder's model, if it needs one")
    p.add_argument("--fusion", choices=("consensus", "mean"), default="consensus")
    p.add_argument("--frame-step", type=int, help="use every N-th frame")
    p.add_argument("--depth-tolerance", type=float, default=0.05, help="relative depth test tau (default 0.05)")
    p.add_argument("--border", type=int, default=10, help="image border in pixels (default 10)")
    p.add_argument("--layout", help="force a scan layout")
    p.add_argument("--frames", help="frames folder for a PLY scan")
    p.add_argument("--out", required=True, help="output .npz of lifted features")
    p.set_defaults(func=_cmd_lift)

    p = sub.add_parser("train", help="train the student affinity network by label-free distillation")
    p.add_argument("scenes", nargs="+", help="training scans (paths, or .txt files listing one path per line)")
    p.add_argument("--features", required=True, help="folder of lifted features, <scene>.npz (from `geopurify lift`)")
    p.add_argument("--out", required=True, help="run folder: checkpoints (last.pt, best.pt), train.log, cache/")
    p.add_argument("--teacher", default="geometric", help="geometric (default), precomputed, or a plugin")
    p.add_argument("--teacher-path", help="folder of <scene>.npy features for --teacher precomputed")
    p.add_argument("--preset", choices=("cpu", "upstream"), default="cpu", help="student size (default cpu)")
    p.add_argument("--norm", choices=("batch", "layer"), help="normalisation layers (default: the preset's)")
    p.add_argument("--levels", type=int, help="coarse levels of a U-Net student (0: the upstream plain network; "
                   "default: the preset's)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--warmup-epochs", type=int, default=2)
    p.add_argument("--save-every", type=int, default=1,
                   help="validate and checkpoint every this many epochs and after the last (default 1)")
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate of the residual blocks (stem x0.1, head x5)")
    p.add_argument("--anchors", type=int, default=4096, help="anchors per scene and iteration")
    p.add_argument("--micro-max-similarity", type=float, help="reject micro negatives more similar than this")
    p.add_argument("--no-augment", action="store_true", help="no random rotation/scale during training")
    p.add_argument("--semantic-weight", type=float, default=0.0,
                   help="also choose pairs by the lifted features, with this weight (default 0: teacher only)")
    p.add_argument("--val", nargs="+", help="validation scans for the label-free best-checkpoint criterion")
    p.add_argument("--select", type=int, help="train on this many diverse scenes chosen from SCENES")
    p.add_argument("--select-by", choices=("lifted", "labels"), default="lifted",
                   help="diversity from lifted features (label-free, default) or ground-truth labels (as the paper)")
    p.add_argument("--encoder", help="lift missing features with this encoder (as `geopurify lift`)")
    p.add_argument("--model", help="encoder model/input for --encoder")
    p.add_argument("--vocab", help="vocabulary for consensus fusion when lifting")
    p.add_argument("--text-encoder", help="text encoder for the vocabulary")
    p.add_argument("--text-model", help="text encoder model folder")
    p.add_argument("--layout", help="force a scan layout")
    p.add_argument("--label-set", help="label set of the scans' labels")
    p.add_argument("--seed", type=int, default=5557)
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--restart", action="store_true", help="ignore an existing last.pt instead of resuming")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("segment", help="label every point of a scan with an open vocabulary")
    p.add_argument("scene", help="scan file or folder")
    p.add_argument("--features", required=True, help="lifted features .npz of the scan")
    p.add_argument("--vocab", required=True, help="label set name, file with one class per line, or 'a,b,c'")
    p.add_argument("--other-threshold", type=float, help="label points whose best cosine is below this -1 (other)")
    p.add_argument("--out", required=True, help="output folder: <scene>_labels.npy, _labels.ply, _summary.json")
    p.add_argument("--frames", help=argparse.SUPPRESS)
    _query_flags(p)
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser("evaluate", help="mIoU/mAcc of direct projection vs purification over labelled scans")
    p.add_argument("scenes", nargs="+", help="labelled scans (paths, or .txt files listing one path per line)")
    p.add_argument("--features", required=True, help="folder of lifted features, <scene>.npz")
    p.add_argument("--out", help="write the results as JSON here")
    _query_flags(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("demo", help="the whole pipeline on the embedded default scan (a generated furnished "
                       "room) or --scene, with simulated 2D predictions: report, pictures, 3D viewer")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--scene", help="a labelled scan instead of the generated room")
    p.add_argument("--layout", help="force a scan layout (with --scene)")
    p.add_argument("--label-set", help="label set of the scan's labels (with --scene)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--density", type=float, default=300.0, help="points per m2 of the generated room")
    p.add_argument("--views", type=int, default=40, help="rendered views (default 40)")
    p.add_argument("--epochs", type=int, default=8, help="student training epochs (default 8)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except GeopurifyError as exc:
        print(f"geopurify: error: {exc}", file=sys.stderr)
        return 2
    except (KeyError, TypeError) as exc:  # unknown layout / label set / option for this layout
        if args.verbose:
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"geopurify: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
