"""What the commands share: reading a scan, building encoders and a segmenter, and the flags for them."""

from __future__ import annotations

import argparse
import json

from .._argparse import add_config_flags, add_device_flag, config_from_args
from ..errors import InputError

LIFT_FIELDS = ["fusion", "depth_tolerance", "border", "frame_step", "batch_frames"]
POOL_FIELDS = ["k", "steps", "sharpen", "alpha"]


def scan_of(args: argparse.Namespace, frame_step: bool = False):  # noqa: ANN202 - Scan
    from ..workflows import open_scan
    return open_scan(args.scene, layout=args.layout, label_set=getattr(args, "label_set", None),
                     frames=getattr(args, "frames", None), frame_step=args.frame_step if frame_step else None)


def encoder_of(args: argparse.Namespace):  # noqa: ANN202 - ImageEncoder | None
    spec = encoder_spec_of(args)
    return None if spec is None else spec.build()


def encoder_spec_of(args: argparse.Namespace):  # noqa: ANN202 - EncoderSpec | None
    from ..workflows import EncoderSpec
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
    return EncoderSpec(args.encoder, args.source, options, args.text_encoder, args.text_source)


def lifted_or_encoder(args: argparse.Namespace, scan):  # noqa: ANN001, ANN201 - (LiftedFeatures | None, ImageEncoder | None)
    """The scan's lifted features from ``--features``, or else the ``--encoder`` to lift with now (one of them is needed)."""
    from ..lifting import LiftedFeatures
    lifted = LiftedFeatures.load(args.features, scene=scan.scene) if args.features else None
    encoder = None if lifted is not None else encoder_of(args)
    if lifted is None and encoder is None:
        raise InputError("give --features (lifted features of the scan) or --encoder NAME --source ... to lift now")
    return lifted, encoder


def vocab_of(args: argparse.Namespace) -> list[str] | None:
    from ..labels import resolve_vocabulary
    return resolve_vocabulary(args.vocab) if args.vocab else None


def lift_config_of(args: argparse.Namespace):  # noqa: ANN202 - LiftConfig
    from ..lifting import LiftConfig
    return config_from_args(args, LiftConfig, LIFT_FIELDS) if hasattr(args, "fusion") else LiftConfig()


def pooling_of(args: argparse.Namespace):  # noqa: ANN202 - PoolingConfig
    from ..segment import PoolingConfig
    return config_from_args(args, PoolingConfig, POOL_FIELDS)


def segmenter_of(args: argparse.Namespace, encoder=None):  # noqa: ANN001, ANN202 - Segmenter
    from ..workflows import build_text_encoder, segmenter_for

    # an encoder built with --text-encoder already holds it (Segmenter falls back to encoder.text_encoder)
    text = None if encoder is not None else build_text_encoder(args.text_encoder, args.text_source)
    return segmenter_for(args.student, purify=not args.no_purify, encoder=encoder, text_encoder=text,
                         pooling=pooling_of(args), lift_config=lift_config_of(args),
                         device=args.device)


def text_embeddings_of(args: argparse.Namespace):  # noqa: ANN202 - Tensor | None
    from ..workflows import read_text_embeddings
    return read_text_embeddings(args.text_embeddings) if args.text_embeddings else None


def needs_text(args: argparse.Namespace, seg) -> None:  # noqa: ANN001
    if seg.text_encoder is None and not args.text_embeddings:
        raise InputError("give --text-encoder (minilm, clip-hf), --text-embeddings, or an --encoder with its own "
                         "text encoder, to embed the vocabulary")


def scan_flags(p: argparse.ArgumentParser, frames: bool = True) -> None:
    p.add_argument("--layout", help="force a scan layout instead of detecting it")
    p.add_argument("--label-set", help="label set of the scans' labels (scannet20, scannet200, matterport21, nyu40)")
    if frames:
        p.add_argument("--frames", help="frames folder for a PLY scan (ScanNet export or 7-Scenes layout)")


def encoder_flags(p: argparse.ArgumentParser, why: str) -> None:
    p.add_argument("--encoder", help=f"{why}: clip-hf, siglip, mask-embed, sam3, precomputed, masks, or a plugin")
    p.add_argument("--source", help="the encoder's source: model folder or hub id (clip-hf, siglip, sam3; mask-embed: "
                   "its image tower), feature folder or pattern with {frame} (precomputed), mask folder (masks)")
    p.add_argument("--encoder-option", action="append", metavar="KEY=VALUE",
                   help="another option of the encoder (repeatable), e.g. device=cuda, dtype=bfloat16, short_side=336, "
                   "attention=clearclip, masks=FOLDER or sam=SAM_MODEL (mask-embed), rule=semantic (sam3)")
    p.add_argument("--vocab", help="vocabulary: a label set (scannet20, ...), a file with one class per line, "
                   "or 'chair,table,...'")
    text_flags(p)
    add_config_flags(p, _lift_config_cls(), LIFT_FIELDS)


def text_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text-encoder", help="text encoder of the vocabulary (minilm, clip-hf, siglip; default: the "
                   "encoder's own)")
    p.add_argument("--text-source", help="the text encoder's source (model folder or hub id), if it needs one")


def _lift_config_cls() -> type:
    from ..lifting import LiftConfig
    return LiftConfig


def query_flags(p: argparse.ArgumentParser) -> None:
    from ..segment import PoolingConfig
    p.add_argument("--student", help="student checkpoint (best.pt); without it pooling uses uniform weights")
    p.add_argument("--no-purify", action="store_true", help="direct projection only (no pooling)")
    p.add_argument("--text-embeddings", help=".npy (C, D) unit text embeddings, one row per vocabulary class")
    add_config_flags(p, PoolingConfig, POOL_FIELDS)
    add_device_flag(p)
