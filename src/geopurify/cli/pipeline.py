"""The single-scan pipeline commands: info, lift, train, segment, evaluate, demo."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .._argparse import add_config_flags, add_device_flag, config_from_args
from .._fileio import check_output_dir, check_output_file
from ..errors import InputError
from ._common import (
    encoder_flags,
    encoder_of,
    lift_config_of,
    lifted_or_encoder,
    needs_text,
    pooling_of,
    query_flags,
    scan_flags,
    scan_of,
    segmenter_of,
    text_embeddings_of,
    text_flags,
    vocab_of,
)

TRAIN_FIELDS = ["epochs", "warmup_epochs", "lr", "seed", "augment", "semantic_weight", "save_every"]
PAIR_FIELDS = ["anchors", "micro_max_similarity"]
DEMO_FIELDS = ["views", "epochs", "seed", "density"]


def _cmd_info(args: argparse.Namespace) -> int:
    from ..io.summary import describe_scan
    print(describe_scan(scan_of(args, frame_step=True)))
    return 0


def _cmd_lift(args: argparse.Namespace) -> int:
    from ..workflows import import_lifted, lift

    check_output_file(args.out)
    scan = scan_of(args)
    if args.importer:
        if not args.source:
            raise InputError(f"--importer {args.importer} needs --source <the file it reads>")
        lifted = import_lifted(scan, args.importer, args.source, lift_config_of(args))
    elif args.encoder:
        lifted = lift(scan, encoder_of(args), vocabulary=vocab_of(args), config=lift_config_of(args))
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
    from ..student import PairConfig, TrainConfig
    from ..workflows import train

    check_output_dir(args.out)
    pairs = config_from_args(args, PairConfig, PAIR_FIELDS)
    config = config_from_args(args, TrainConfig, TRAIN_FIELDS, pairs=pairs)
    overrides = {k: v for k, v in (("norm", args.norm), ("levels", args.levels)) if v is not None}
    result = train(args.scenes, args.features, args.out, teacher=args.teacher,
                   teacher_options={"path": args.teacher_path} if args.teacher_path else None, preset=args.preset,
                   student_overrides=overrides, config=config, val=args.val, select=args.select,
                   select_by=args.select_by, encoder=encoder_of(args), vocabulary=vocab_of(args),
                   lift_config=lift_config_of(args), layout=args.layout, label_set=args.label_set, device=args.device,
                   resume=not args.restart, progress=not args.no_progress)
    last = result.history[-1] if result.history else {}
    if int(os.environ.get("RANK", "0")):                       # under torchrun rank 0 reports
        return 0
    print(f"trained on {len(result.scenes)} scenes for {config.epochs} epochs: "
          f"final loss {last.get('loss', float('nan')):.4f}, best epoch {result.best_epoch + 1} (validation loss "
          f"{min(h['val_loss'] for h in result.history):.4f}); student: {Path(args.out) / 'best.pt'}")
    return 0


def _cmd_segment(args: argparse.Namespace) -> int:
    from ..workflows import segment

    check_output_dir(args.out)
    pooling_of(args), lift_config_of(args)                     # invalid settings fail before any work
    scan, vocab = scan_of(args), vocab_of(args)
    if not vocab:
        raise InputError("give --vocab: a label set, a file with one class per line, or 'chair,table,...'")
    lifted, encoder = lifted_or_encoder(args, scan)
    seg = segmenter_of(args, encoder)
    needs_text(args, seg)
    out = segment(scan, seg, vocab, args.out, lifted=lifted, text_embeddings=text_embeddings_of(args),
                  purify=not args.no_purify, other_threshold=args.other_threshold, pictures=args.pictures)
    top = sorted(out.info["points_per_class"].items(), key=lambda kv: -kv[1])[:5]
    print(f"{scan.scene.name}: {'purified' if out.info['purified'] else 'direct projection'}; "
          + ", ".join(f"{k} {v:,}" for k, v in top) + f"; wrote {args.out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ..labels import get_label_set
    from ..workflows import evaluate_scans

    if args.out:
        check_output_file(args.out)
    seg = segmenter_of(args)
    needs_text(args, seg)
    ev = evaluate_scans(args.scenes, args.features, seg, label_set=args.label_set, layout=args.layout,
                        purify=not args.no_purify,
                        text_embeddings=text_embeddings_of(args))
    label_set = get_label_set(args.label_set or "scannet20")
    print(f"{len(ev.scenes)} scenes, {label_set.name} ({int(label_set.scored.sum())} classes)\n")
    print(ev.table())
    if args.out:
        ev.save(args.out)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..sim import make_room
    from ..sim.demo import DemoConfig, run_demo

    check_output_dir(args.out)
    config = config_from_args(args, DemoConfig, DEMO_FIELDS)
    scene = scan_of(args).scene if args.scene else make_room(seed=config.seed, density=config.density)
    result = run_demo(args.out, scene, config, progress=not args.no_progress)
    print(f"{scene.name}: direct projection {100 * result.direct_miou:.1f} mIoU, purified "
          f"{100 * result.purified_miou:.1f} mIoU over the classes present (upstream all-class mIoU: "
          f"{100 * result.direct_miou_all:.1f}, {100 * result.purified_miou_all:.1f}; simulated 2D predictions); "
          f"report: {result.report}; viewer: {Path(args.out) / 'viewer.html'}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to the ``geopurify`` parser."""
    from ..sim.demo import DemoConfig
    from ..student import PairConfig, TrainConfig
    from ..student.network import PRESETS


    p = sub.add_parser("info", help="summarise a scan: points, frames, label histogram, bounding box")
    p.add_argument("scene", help="scan file or folder (any layout geopurify reads)")
    scan_flags(p)
    p.add_argument("--frame-step", type=int, help="keep every N-th frame")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("lift", help="lift 2D features from the scan's frames onto its points")
    p.add_argument("scene", help="scan file or folder")
    encoder_flags(p, "the 2D encoder")
    p.add_argument("--importer", help="instead of an encoder: read features another tool lifted (openscene: "
                   "--source <scene>_<k>.pt)")
    scan_flags(p)
    p.add_argument("--out", required=True, help="output .npz of lifted features")
    p.set_defaults(func=_cmd_lift)

    p = sub.add_parser("train", help="train the student affinity network by label-free distillation")
    p.add_argument("scenes", nargs="+", help="training scans (paths, or .txt files listing one path per line)")
    p.add_argument("--features", required=True, help="folder of lifted features, <scene>.npz (from `geopurify lift`), "
                   "or a `geopurify run` folder")
    p.add_argument("--out", required=True, help="run folder: checkpoints (last.pt, best.pt), train.log, cache/")
    p.add_argument("--teacher", default="geometric", help="geometric (default), precomputed, sonata, or a plugin")
    p.add_argument("--teacher-path", help="folder of <scene>.npy features for --teacher precomputed; "
                   "checkpoint (sonata.pth) or hub id for --teacher sonata")
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
    encoder_flags(p, "lift missing features with this encoder (as `geopurify lift`)")
    scan_flags(p, frames=False)
    add_device_flag(p)
    p.add_argument("--restart", action="store_true", help="ignore an existing last.pt instead of resuming")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("segment", help="label every point of a scan with an open vocabulary")
    p.add_argument("scene", help="scan file or folder")
    p.add_argument("--features", help="lifted features .npz of the scan (default: lift now with --encoder)")
    encoder_flags(p, "lift with this encoder when no --features are given")
    p.add_argument("--other-threshold", type=float, help="label points whose best cosine is below this -1 (other)")
    p.add_argument("--out", required=True, help="output folder: <scene>_labels.npy, _labels.ply, _summary.json")
    p.add_argument("--pictures", action="store_true", help="also <scene>_labels.png: colour | ground truth | result, "
                   "with a legend")
    scan_flags(p)
    query_flags(p)
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser("evaluate", help="mIoU/mAcc of direct projection vs purification over labelled scans")
    p.add_argument("scenes", nargs="+", help="labelled scans (paths, or .txt files listing one path per line)")
    p.add_argument("--features", required=True, help="folder of lifted features, <scene>.npz, or a `geopurify run` folder")
    p.add_argument("--out", help="write the results as JSON here")
    text_flags(p)
    scan_flags(p, frames=False)
    query_flags(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("demo", help="the whole pipeline on the embedded default scan (a generated furnished "
                       "room) or --scene, with simulated 2D predictions: report, pictures, 3D viewer")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--scene", help="a labelled scan instead of the generated room")
    scan_flags(p, frames=False)
    add_config_flags(p, DemoConfig, DEMO_FIELDS)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_demo)
