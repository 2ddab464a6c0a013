"""``geopurify run``: the single-scan stages over many scans, resumable, locally or on a Ray cluster."""

from __future__ import annotations

import argparse

from ..errors import InputError
from ._common import encoder_flags, encoder_spec_of, lift_config_of, pooling_of, query_flags, scan_flags, vocab_of


def _cmd_run(args: argparse.Namespace) -> int:
    from ..batch import RunConfig, run_batch

    if args.text_embeddings:
        raise InputError("run embeds the vocabulary with --text-encoder (or the encoder's own); it does not take "
                         "--text-embeddings")
    config = RunConfig(stages=tuple(s.strip() for s in args.stages.split(",") if s.strip()),
                       encoder=encoder_spec_of(args), vocabulary=vocab_of(args), lift=lift_config_of(args),
                       pooling=pooling_of(args), student=args.student, purify=not args.no_purify,
                       features=args.features, other_threshold=args.other_threshold, label_set=args.label_set,
                       layout=args.layout, device=args.device)
    options = {"threads": args.cpus_per_worker} if args.executor == "local" else {
        "address": args.ray_address, "workers": args.workers, "cpus_per_worker": args.cpus_per_worker or 1}
    result = run_batch(args.scans, args.out, config, executor=args.executor, executor_options=options,
                       retries=args.retries, restart=args.restart, progress=not args.no_progress)
    print(result.table())
    if result.evaluation is not None:
        print(f"\n{len(result.evaluation.scenes)} scans merged into {args.out}/evaluation.json\n")
        print(result.evaluation.table())
    return 1 if result.failed else 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``geopurify run``."""
    p = sub.add_parser("run", help="lift / segment / evaluate many scans into one folder: resumable, with a "
                       "manifest and merged metrics, in this process or on a Ray cluster")
    p.add_argument("scans", nargs="+", help="scans: folders or files, globs ('scans/scene*'), or .txt lists")
    p.add_argument("--out", required=True, help="output folder: one subfolder per scan, manifest.json, evaluation.json")
    p.add_argument("--stages", default="lift,segment", help="comma-separated: lift, segment, evaluate "
                   "(default lift,segment)")
    p.add_argument("--features", help="folder of lifted features <scene>.npz to use instead of lifting")
    encoder_flags(p, "the 2D encoder; --source may hold {scan} (the scan's path) or {name} (its folder name)")
    p.add_argument("--other-threshold", type=float, help="label points whose best cosine is below this -1 (other)")
    scan_flags(p, frames=False)
    query_flags(p)
    p.add_argument("--executor", default="local", help="local (default: in this process) or ray")
    p.add_argument("--ray-address", help="join a running Ray cluster (auto or host:port; default: start a local one)")
    p.add_argument("--workers", type=int, help="Ray actors (default: one per GPU, or per --cpus-per-worker CPUs)")
    p.add_argument("--cpus-per-worker", type=int, help="CPUs (torch threads) per worker (Ray default 1)")
    p.add_argument("--retries", type=int, default=1, help="tries more of a failed scan (default 1)")
    p.add_argument("--restart", action="store_true", help="discard the folder's manifest and redo every scan")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_run)
