"""Dense 2D encoders (issue #14) at their real size: seconds per frame, frames/s and peak memory.

No weights can be downloaded here, so each model has the published architecture of a real checkpoint,
built from a hand-written config with seeded random weights: the timings are those of the real model,
the features are not.

* ``clip-hf``: CLIP ViT-B/16 as ``openai/clip-vit-base-patch16`` (vision 768 wide, 12 layers, 12 heads,
  MLP 3072, patch 16, 224 px; text 512 wide, 8 heads, 12 layers, vocabulary 49408; projection 512).
* ``siglip``: SigLIP base-patch16 as ``google/siglip-base-patch16-512`` (vision and text 768 wide,
  12 layers, 12 heads, MLP 3072, patch 16, 512 px; vocabulary 32000, 64 text positions); ``--siglip-size
  224`` for ``google/siglip-base-patch16-224``.

Each model is saved with ``save_pretrained`` (and a small word-level tokenizer, as the tests make
offline) into a temporary folder and loaded through ``get_encoder(name, source=folder)``, so the timed
code is what ``geopurify lift`` runs. Frames: real 7-Scenes frames (640x480), preprocessed to the model's
default short side (CLIP: 224x304 input, 14x19 patches; SigLIP 512: 512x688, 32x43 patches).

Rows per encoder: ``encode_frame`` one frame at a time (batch 1) and ``encode_frames`` on ``--frames``
frames at once (batch 4), each with ``attention=maskclip`` and ``clearclip``. The ratio is the row's
seconds per frame over the encoder's ``maskclip`` batch-1 row, measured in the same run. One untimed
warm-up frame per encoder. Peak RSS: the process's resident memory sampled every 5 ms during the row
(the weights included); on CUDA, the peak CUDA memory of the row as well.

Usage: ``python benchmarks/bench_encoders.py [--frames 4] [--siglip-size 512] [--device cpu|cuda]``
(``GEOPURIFY_SHARED_DATA`` or ``../shared/data``).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import transformers

from _table import print_table
from geopurify import load_scan
from geopurify.encoders import get_encoder

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GEOPURIFY_SHARED_DATA", REPO.parent / "shared" / "data"))
sys.path.insert(0, str(REPO / "tests"))
from tiny_models import CLIP_WORDS, SIGLIP_WORDS, _word_tokenizer  # noqa: E402

RULES = ("maskclip", "clearclip")


def save_clip(root: Path, layers: int, size: int = 224) -> None:
    """``openai/clip-vit-base-patch16``'s architecture, random weights, saved with a word-level tokenizer."""
    _word_tokenizer(root, CLIP_WORDS, {"[PAD]": 0, "[UNK]": 1, "[BOS]": 2, "[EOS]": 3}, "[BOS] $A [EOS]",
                    bos_token="[BOS]", eos_token="[EOS]")
    cfg = transformers.CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=layers,
                         num_attention_heads=8, max_position_embeddings=77, bos_token_id=2, eos_token_id=3,
                         pad_token_id=0),
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=layers, num_attention_heads=12,
                           image_size=224, patch_size=16),
        projection_dim=512)
    transformers.CLIPModel(cfg).eval().save_pretrained(root)


def save_siglip(root: Path, layers: int, size: int = 512) -> None:
    """``google/siglip-base-patch16-<size>``'s architecture, random weights, with a word-level tokenizer."""
    _word_tokenizer(root, SIGLIP_WORDS, {"[PAD]": 0, "[UNK]": 1, "[EOS]": 2}, "$A [EOS]", eos_token="[EOS]",
                    model_input_names=["input_ids"])
    tower = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=layers, num_attention_heads=12)
    cfg = transformers.SiglipConfig(
        text_config=dict(vocab_size=32000, max_position_embeddings=64, pad_token_id=0, bos_token_id=2,
                         eos_token_id=2, **tower),
        vision_config=dict(image_size=size, patch_size=16, **tower))
    transformers.SiglipModel(cfg).eval().save_pretrained(root)


SAVERS = {"clip-hf": lambda root, layers, siglip_size: save_clip(root, layers),
          "siglip": save_siglip}


class PeakRSS:
    """Peak resident memory of this process (GiB) while the block runs, sampled from ``/proc`` every 5 ms."""

    def __enter__(self) -> PeakRSS:
        self.peak, self._stop = self._rss(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2 ** 20
        return float("nan")


def one_by_one(enc, frames: list) -> list:
    """``encode_frame`` per frame: what lifting with ``batch_frames=1`` calls."""
    return [enc.encode_frame(f) for f in frames]


def timed(fn, enc, frames: list, device: str) -> tuple[float, float, float]:
    """``(seconds, peak RSS GiB, peak CUDA GiB)`` of one call ``fn(enc, frames)``."""
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with PeakRSS() as mem:
        t = time.perf_counter()
        fn(enc, frames)
        if cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
    return dt, mem.peak, torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else float("nan")


def bench(name: str, folder: Path, frames: list, device: str) -> list[tuple]:
    rows, base = [], None
    for rule in RULES:
        enc = get_encoder(name, source=folder, device=device, attention=rule)
        if rule == RULES[0]:
            enc.encode_frame(frames[0])                                   # warm-up, untimed
            h, w = enc.preprocess(frames[0].image).shape[2:]
        for batch in (1, len(frames)):
            dt, rss, gpu = timed(one_by_one if batch == 1 else type(enc).encode_frames, enc, frames, device)
            per = dt / len(frames)
            base = base or per
            rows.append((f"{name} ({h}x{w} input, {h // enc.patch}x{w // enc.patch} patches)", rule, batch,
                         f"{per:.3f}", f"{1 / per:.2f}", f"{per / base:.2f}", f"{rss:.2f}")
                        + ((f"{gpu:.2f}",) if device.startswith("cuda") else ()))
        del enc
        gc.collect()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=4, help="frames timed per row (= the batch of encode_frames)")
    ap.add_argument("--siglip-size", type=int, default=512, choices=(224, 512))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--layers", type=int, default=12, help="transformer layers per tower (12 = the real models)")
    ap.add_argument("--encoders", nargs="+", default=["clip-hf", "siglip"], choices=list(SAVERS))
    a = ap.parse_args()
    scan_dir = DATA / "sevenscenes_redkitchen"
    if not scan_dir.is_dir():
        print(f"(skipped: {scan_dir} not found; set GEOPURIFY_SHARED_DATA)")
        return
    scan = load_scan(scan_dir)
    step = max(1, len(scan.frames) // a.frames)
    frames = [scan.frames[i * step] for i in range(a.frames)]             # loaded once, outside the timing
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.encoders:
            folder = Path(tmp) / name
            folder.mkdir()
            t = time.perf_counter()
            SAVERS[name](folder, a.layers, a.siglip_size)
            gc.collect()
            print(f"{name}: built and saved in {time.perf_counter() - t:.1f} s", flush=True)
            rows += bench(name, folder, frames, a.device)
    where = torch.cuda.get_device_name() if a.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    w, h = frames[0].size
    header = ["encoder", "rule", "batch", "s / frame", "frames / s", "vs maskclip batch 1", "peak RSS GiB"]
    print_table(f"dense encoders, random weights of the real architectures ({a.layers} layers), {a.frames} 7-Scenes "
                f"frames {w}x{h}; {where}, torch {torch.__version__}, transformers {transformers.__version__}",
                header + (["peak CUDA GiB"] if a.device.startswith("cuda") else []), rows)


if __name__ == "__main__":
    main()
