"""Looking at results: ``geopurify query`` (free-text heatmaps written to files) and ``geopurify view`` (a live viewer)."""

from __future__ import annotations

import argparse

from .._fileio import check_output_dir
from ..errors import InputError
from ._common import (
    encoder_flags,
    encoder_of,
    lifted_or_encoder,
    needs_text,
    query_flags,
    scan_flags,
    scan_of,
    segmenter_of,
    vocab_of,
)


def _cmd_query(args: argparse.Namespace) -> int:
    from ..workflows import query_scans

    check_output_dir(args.out)
    encoder = None if args.features else encoder_of(args)
    if args.features is None and encoder is None:
        raise InputError("give --features (lifted features: a folder of <scene>.npz, or one .npz) or --encoder NAME")
    seg = segmenter_of(args, encoder)
    needs_text(args, seg)
    folders = query_scans(args.scenes, args.text, seg, args.out, features=args.features, purify=not args.no_purify,
                          top_k=args.top_k, layout=args.layout, label_set=args.label_set)
    print(f"{len(args.text)} queries on {len(folders)} scans; wrote {args.out}")
    return 0


def _cmd_view(args: argparse.Namespace) -> int:
    from ..viz.viewer import choose_port, start_viewer
    from ..viz.viewer_state import ViewerState

    port = choose_port(args.host, args.port)                   # a taken port fails before any work
    scan, vocab = scan_of(args), vocab_of(args)
    lifted, encoder = lifted_or_encoder(args, scan)
    seg = segmenter_of(args, encoder)
    needs_text(args, seg)
    seg.set_scan(scan, lifted=lifted, vocabulary=vocab, progress=True)
    viewer = start_viewer(ViewerState(scan.scene, seg, args.out, vocabulary=vocab, purify=not args.no_purify),
                          host=args.host, port=port)
    print(f"geopurify view: {scan.scene.name} at http://{args.host}:{viewer.port} (Ctrl-C stops)", flush=True)
    viewer.serve_forever()
    print("geopurify view: stopped", flush=True)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``query`` and ``view`` to the ``geopurify`` parser."""
    p = sub.add_parser("query", help="free-text queries on scans, without a GUI: per query and scan a relevance "
                       ".npy, a heatmap .ply and the top-k points with their bounding box (.json)")
    p.add_argument("scenes", nargs="+", help="scans (paths, or .txt files listing one path per line)")
    p.add_argument("--text", action="append", required=True, help="a free-text query (repeatable)")
    p.add_argument("--features", help="folder of lifted features <scene>.npz, a `geopurify run` folder, or one .npz "
                   "for one scan (default: lift now with --encoder)")
    p.add_argument("--top-k", type=int, default=100, help="points listed per query in the .json (default 100)")
    p.add_argument("--out", required=True, help="output folder: <scene>/qNN_<query>.npy|.ply|.json, queries.json")
    encoder_flags(p, "lift with this encoder when no --features are given")
    scan_flags(p)
    query_flags(p)
    p.set_defaults(func=_cmd_query)

    p = sub.add_parser("view", help="a live 3D viewer in the browser: layers, legend, vocabulary box, free-text "
                       "query box, threshold, click for top-5 classes, exports (extra: viewer)")
    p.add_argument("scene", help="scan file or folder")
    p.add_argument("--features", help="lifted features .npz of the scan (default: lift now with --encoder)")
    encoder_flags(p, "lift with this encoder when no --features are given")
    p.add_argument("--out", default="view_out", help="folder the export buttons write into (default: view_out)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, help="port (default 8080, or a free one when 8080 is taken)")
    scan_flags(p)
    query_flags(p)
    p.set_defaults(func=_cmd_view)
