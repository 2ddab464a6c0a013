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

from .errors import GeopurifyError

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


def _cmd_demo(args: argparse.Namespace) -> int:
    from .datasets import Scan
    from .io.ply import write_label_ply
    from .sim import make_room
    from .summary import describe_scan

    out = Path(args.out)
    scene = make_room(seed=args.seed)
    scan = Scan(scene, None, "sim-room", Path(f"<generated room, seed {args.seed}>"))
    print(describe_scan(scan))
    assert scene.labels is not None and scene.label_set is not None
    ply = out / f"{scene.name}_gt.ply"
    write_label_ply(ply, scene.coords.numpy(), scene.labels.numpy(), scene.label_set.num_classes)
    log.info("wrote %s (ground-truth labels as colours)", ply)
    return 0


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

    p = sub.add_parser("demo", help="run on the embedded default scan (a generated furnished room)")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--seed", type=int, default=0)
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
