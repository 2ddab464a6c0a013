"""Command-line interface: each subcommand maps its flags onto one call of :mod:`geopurify.workflows`.

``geopurify --help`` lists the commands. Flags that set a config field are built from the config
dataclasses (:mod:`geopurify._argparse`), so defaults live there. Problems with the input print one line
(``geopurify: error: <file>: <problem>``) and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ._argparse import add_config_flags, add_device_flag, config_from_args
from ._fileio import check_output_dir, check_output_file
from .errors import GeopurifyError, InputError

LIFT_FIELDS = ["fusion", "depth_tolerance", "border", "frame_step"]
TRAIN_FIELDS = ["epochs", "warmup_epochs", "lr", "seed", "augment", "semantic_weight", "save_every"]
PAIR_FIELDS = ["anchors", "micro_max_similarity"]
POOL_FIELDS = ["k", "steps", "sharpen", "alpha"]
DEMO_FIELDS = ["views", "epochs", "seed", "density"]


def _scan(args: argparse.Namespace, frame_step: bool = False):  # noqa: ANN202 - Scan
    from .workflows import open_scan
    return open_scan(args.scene, layout=args.layout, label_set=getattr(args, "label_set", None),
                     frames=getattr(args, "frames", None), frame_step=args.frame_step if frame_step else None)


def _encoder(args: argparse.Namespace):  # noqa: ANN202 - ImageEncoder | None
    from .workflows import EncoderSpec
    if not getattr(args, "encoder", None):
        return None
    options = {}
    for item in args.encoder_option or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--encoder-option takes KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return EncoderSpec(args.encoder, args.source, options, args.text_encoder, args.text_source).build()


def _vocab(args: argparse.Namespace) -> list[str] | None:
    from .labels import resolve_vocabulary
    return resolve_vocabulary(args.vocab) if args.vocab else None


def _lift_config(args: argparse.Namespace):  # noqa: ANN202 - LiftConfig
    from .lifting import LiftConfig
    return config_from_args(args, LiftConfig, LIFT_FIELDS) if hasattr(args, "fusion") else LiftConfig()


def _cmd_info(args: argparse.Namespace) -> int:
    from .io.summary import describe_scan
    print(describe_scan(_scan(args, frame_step=True)))
    return 0


def _cmd_lift(args: argparse.Namespace) -> int:
    from .workflows import import_lifted, lift

    check_output_file(args.out)
    scan = _scan(args)
    if args.importer:
        if not args.source:
            raise InputError(f"--importer {args.importer} needs --source <the file it reads>")
        lifted = import_lifted(scan, args.importer, args.source, _lift_config(args))
    elif args.encoder:
        lifted = lift(scan, _encoder(args), vocabulary=_vocab(args), config=_lift_config(args))
    else:
        raise InputError("give --encoder NAME (to lift the frames) or --importer NAME (features lifted elsewhere)")
    lifted.save(args.out)
    seen = lifted.seen
    views = lifted.view_counts[seen].float().mean() if bool(seen.any()) else 0.0
    print(f"{scan.scene.name}: {lifted.dim}-d {lifted.encoder} features for {lifted.num_points:,} points; "
          f"seen by frames: {int(seen.sum()):,} ({100 * float(seen.float().mean()):.1f}%), "
          f"mean views per seen point: {float(views):.1f}; wrote {args.out}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .student import PairConfig, TrainConfig
    from .workflows import train

    check_output_dir(args.out)
    pairs = config_from_args(args, PairConfig, PAIR_FIELDS)
    config = config_from_args(args, TrainConfig, TRAIN_FIELDS, pairs=pairs)
    overrides = {k: v for k, v in (("norm", args.norm), ("levels", args.levels)) if v is not None}
    result = train(args.scenes, args.features, args.out, teacher=args.teacher,
                   teacher_options={"path": args.teacher_path} if args.teacher_path else None, preset=args.preset,
                   student_overrides=overrides, config=config, val=args.val, select=args.select,
                   select_by=args.select_by, encoder=_encoder(args), vocabulary=_vocab(args),
                   lift_config=_lift_config(args), layout=args.layout, label_set=args.label_set, device=args.device,
                   resume=not args.restart, progress=not args.no_progress)
    last = result.history[-1] if result.history else {}
    print(f"trained on {len(result.scenes)} scenes for {config.epochs} epochs: "
          f"final loss {last.get('loss', float('nan')):.4f}, best epoch {result.best_epoch + 1} (validation loss "
          f"{min(h['val_loss'] for h in result.history):.4f}); student: {Path(args.out) / 'best.pt'}")
    return 0


def _pooling(args: argparse.Namespace):  # noqa: ANN202 - PoolingConfig
    from .segment import PoolingConfig
    return config_from_args(args, PoolingConfig, POOL_FIELDS)


def _segmenter(args: argparse.Namespace, encoder=None):  # noqa: ANN001, ANN202 - Segmenter
    from .workflows import build_text_encoder, segmenter_for

    # an encoder built with --text-encoder already holds it (Segmenter falls back to encoder.text_encoder)
    text = None if encoder is not None else build_text_encoder(args.text_encoder, args.text_source)
    return segmenter_for(args.student, purify=not args.no_purify, encoder=encoder, text_encoder=text,
                         pooling=_pooling(args), lift_config=_lift_config(args),
                         device=args.device)


def _text_embeddings(args: argparse.Namespace):  # noqa: ANN202 - Tensor | None
    from .workflows import read_text_embeddings
    return read_text_embeddings(args.text_embeddings) if args.text_embeddings else None


def _needs_text(args: argparse.Namespace, seg) -> None:  # noqa: ANN001
    if seg.text_encoder is None and not args.text_embeddings:
        raise InputError("give --text-encoder (minilm, clip-hf), --text-embeddings, or an --encoder with its own "
                         "text encoder, to embed the vocabulary")


def _cmd_segment(args: argparse.Namespace) -> int:
    from .lifting import LiftedFeatures
    from .workflows import segment

    check_output_dir(args.out)
    _pooling(args), _lift_config(args)                     # invalid settings fail before any work
    scan, vocab = _scan(args), _vocab(args)
    if not vocab:
        raise InputError("give --vocab: a label set, a file with one class per line, or 'chair,table,...'")
    lifted = LiftedFeatures.load(args.features, scene=scan.scene) if args.features else None
    encoder = None if lifted is not None else _encoder(args)
    if lifted is None and encoder is None:
        raise InputError("give --features (lifted features of the scan) or --encoder NAME --source ... to lift now")
    seg = _segmenter(args, encoder)
    _needs_text(args, seg)
    out = segment(scan, seg, vocab, args.out, lifted=lifted, text_embeddings=_text_embeddings(args),
                  purify=not args.no_purify, other_threshold=args.other_threshold)
    top = sorted(out.info["points_per_class"].items(), key=lambda kv: -kv[1])[:5]
    print(f"{scan.scene.name}: {'purified' if out.info['purified'] else 'direct projection'}; "
          + ", ".join(f"{k} {v:,}" for k, v in top) + f"; wrote {args.out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .labels import get_label_set
    from .workflows import evaluate_scans

    if args.out:
        check_output_file(args.out)
    seg = _segmenter(args)
    _needs_text(args, seg)
    ev = evaluate_scans(args.scenes, args.features, seg, label_set=args.label_set, layout=args.layout,
                        purify=not args.no_purify,
                        text_embeddings=_text_embeddings(args))
    label_set = get_label_set(args.label_set or "scannet20")
    print(f"{len(ev.scenes)} scenes, {label_set.name} ({int(label_set.scored.sum())} classes)\n")
    print(ev.table())
    if args.out:
        ev.save(args.out)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .sim import make_room
    from .sim.demo import DemoConfig, run_demo

    check_output_dir(args.out)
    config = config_from_args(args, DemoConfig, DEMO_FIELDS)
    scene = _scan(args).scene if args.scene else make_room(seed=config.seed, density=config.density)
    result = run_demo(args.out, scene, config, progress=not args.no_progress)
    print(f"{scene.name}: direct projection {100 * result.direct_miou:.1f} mIoU, purified "
          f"{100 * result.purified_miou:.1f} mIoU (simulated 2D predictions); report: {result.report}; "
          f"viewer: {Path(args.out) / 'viewer.html'}")
    return 0


def _scan_flags(p: argparse.ArgumentParser, frames: bool = True) -> None:
    p.add_argument("--layout", help="force a scan layout instead of detecting it")
    p.add_argument("--label-set", help="label set of the scans' labels (scannet20, scannet200, matterport21, nyu40)")
    if frames:
        p.add_argument("--frames", help="frames folder for a PLY scan (ScanNet export or 7-Scenes layout)")


def _encoder_flags(p: argparse.ArgumentParser, why: str) -> None:
    p.add_argument("--encoder", help=f"{why}: clip-hf, precomputed, masks, or a plugin")
    p.add_argument("--source", help="the encoder's source: model folder or hub id (clip-hf), feature folder or "
                   "pattern with {frame} (precomputed), mask folder (masks)")
    p.add_argument("--encoder-option", action="append", metavar="KEY=VALUE",
                   help="another option of the encoder (repeatable), e.g. device=cuda, short_side=336")
    p.add_argument("--vocab", help="vocabulary: a label set (scannet20, ...), a file with one class per line, "
                   "or 'chair,table,...'")
    _text_flags(p)
    add_config_flags(p, _lift_config_cls(), LIFT_FIELDS)


def _text_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text-encoder", help="text encoder of the vocabulary (minilm, clip-hf; default: the encoder's own)")
    p.add_argument("--text-source", help="the text encoder's source (model folder or hub id), if it needs one")


def _lift_config_cls() -> type:
    from .lifting import LiftConfig
    return LiftConfig


def _query_flags(p: argparse.ArgumentParser) -> None:
    from .segment import PoolingConfig
    p.add_argument("--student", help="student checkpoint (best.pt); without it pooling uses uniform weights")
    p.add_argument("--no-purify", action="store_true", help="direct projection only (no pooling)")
    p.add_argument("--text-embeddings", help=".npy (C, D) unit text embeddings, one row per vocabulary class")
    add_config_flags(p, PoolingConfig, POOL_FIELDS)
    add_device_flag(p)


def build_parser() -> argparse.ArgumentParser:
    from .sim.demo import DemoConfig
    from .student import PairConfig, TrainConfig
    from .student.network import PRESETS

    parser = argparse.ArgumentParser(prog="geopurify", description="Open-vocabulary 3D semantic segmentation of "
                                     "indoor scans (GeoPurify): lift 2D features, purify them with geometry, query.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="summarise a scan: points, frames, label histogram, bounding box")
    p.add_argument("scene", help="scan file or folder (any layout geopurify reads)")
    _scan_flags(p)
    p.add_argument("--frame-step", type=int, help="keep every N-th frame")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("lift", help="lift 2D features from the scan's frames onto its points")
    p.add_argument("scene", help="scan file or folder")
    _encoder_flags(p, "the 2D encoder")
    p.add_argument("--importer", help="instead of an encoder: read features another tool lifted (openscene: "
                   "--source <scene>_<k>.pt)")
    _scan_flags(p)
    p.add_argument("--out", required=True, help="output .npz of lifted features")
    p.set_defaults(func=_cmd_lift)

    p = sub.add_parser("train", help="train the student affinity network by label-free distillation")
    p.add_argument("scenes", nargs="+", help="training scans (paths, or .txt files listing one path per line)")
    p.add_argument("--features", required=True, help="folder of lifted features, <scene>.npz (from `geopurify lift`)")
    p.add_argument("--out", required=True, help="run folder: checkpoints (last.pt, best.pt), train.log, cache/")
    p.add_argument("--teacher", default="geometric", help="geometric (default), precomputed, or a plugin")
    p.add_argument("--teacher-path", help="folder of <scene>.npy features for --teacher precomputed")
    p.add_argument("--preset", choices=tuple(PRESETS), default="cpu", help="student size (default cpu)")
    p.add_argument("--norm", choices=("batch", "layer"), help="normalisation layers (default: the preset's)")
    p.add_argument("--levels", type=int, help="coarse levels of a U-Net student (0: the upstream plain network; "
                   "default: the preset's)")
    add_config_flags(p, TrainConfig, TRAIN_FIELDS)
    add_config_flags(p, PairConfig, PAIR_FIELDS)
    p.add_argument("--val", nargs="+", help="validation scans for the label-free best-checkpoint criterion")
    p.add_argument("--select", type=int, help="train on this many diverse scenes chosen from SCENES")
    p.add_argument("--select-by", choices=("lifted", "labels"), default="lifted",
                   help="diversity from lifted features (label-free, default) or ground-truth labels (as the paper)")
    _encoder_flags(p, "lift missing features with this encoder (as `geopurify lift`)")
    _scan_flags(p, frames=False)
    add_device_flag(p)
    p.add_argument("--restart", action="store_true", help="ignore an existing last.pt instead of resuming")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("segment", help="label every point of a scan with an open vocabulary")
    p.add_argument("scene", help="scan file or folder")
    p.add_argument("--features", help="lifted features .npz of the scan (default: lift now with --encoder)")
    _encoder_flags(p, "lift with this encoder when no --features are given")
    p.add_argument("--other-threshold", type=float, help="label points whose best cosine is below this -1 (other)")
    p.add_argument("--out", required=True, help="output folder: <scene>_labels.npy, _labels.ply, _summary.json")
    _scan_flags(p)
    _query_flags(p)
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser("evaluate", help="mIoU/mAcc of direct projection vs purification over labelled scans")
    p.add_argument("scenes", nargs="+", help="labelled scans (paths, or .txt files listing one path per line)")
    p.add_argument("--features", required=True, help="folder of lifted features, <scene>.npz")
    p.add_argument("--out", help="write the results as JSON here")
    _text_flags(p)
    _scan_flags(p, frames=False)
    _query_flags(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("demo", help="the whole pipeline on the embedded default scan (a generated furnished "
                       "room) or --scene, with simulated 2D predictions: report, pictures, 3D viewer")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--scene", help="a labelled scan instead of the generated room")
    _scan_flags(p, frames=False)
    add_config_flags(p, DemoConfig, DEMO_FIELDS)
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
        if args.verbose:
            raise
        print(f"geopurify: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
