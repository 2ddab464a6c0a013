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
    from .datasets import load_scan
    from .summary import describe_scan

    opts: dict[str, object] = {}
    if args.label_set:
        opts["label_set"] = args.label_set
    if args.frame_step:
        opts["frame_step"] = args.frame_step
    if args.frames:
        opts["frames"] = args.frames
    scan = load_scan(args.scene, layout=args.layout, **opts)
    print(describe_scan(scan))
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
