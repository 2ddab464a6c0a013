"""SAM 3 (``transformers`` ``Sam3Model``): promptable concept segmentation, one text prompt per class.

Per frame the vision backbone runs once (``get_vision_features``); every vocabulary prompt is run against
it, ``prompt_batch`` prompts at a time (the vision features expanded along the batch, not recomputed);
the prompts' text embeddings are computed once per vocabulary. For class ``c`` SAM 3 gives ``Q`` instance
mask logits ``m_cq``, their scores ``s_cq = sigmoid(pred_logits_cq) * sigmoid(presence_c)`` (SAM 3's own
detection confidence, as in its instance post-processing) and a semantic map ``sem_c``.

Per-pixel class scores ``(C, h, w)`` at the mask resolution (``rule=``):

* ``"instances"`` (default): ``score_c(p) = max_q s_cq * sigmoid(m_cq(p))``, the confidence of the best
  instance of class ``c`` covering ``p``. Chosen because the presence factor makes scores comparable
  across prompts (an absent concept scores low everywhere), which the per-class argmax of lifting needs;
* ``"semantic"``: ``score_c(p) = sigmoid(sem_c(p))``, the semantic head as its post-processing reads it.

Neither rule was measured with real weights (none are available offline): only the plumbing is tested.

The features live in *class-score space*: ``D = C``, channel ``c`` is the score of prompt ``c``. Lifting
and pooling work on those scores; this encoder is its own text encoder and embeds a name of its
vocabulary as the one-hot row of its channel, so queries are scores. A name outside the vocabulary is an
error telling to lift again with it. The vocabulary is given as ``vocabulary=`` or set by lifting
(:func:`~geopurify.lifting.lift_scan` calls :meth:`Sam3Encoder.set_vocabulary` with ``--vocab``).

Needs ``torchvision`` (transformers' SAM 3 does): the registry's torchvision wheels are CUDA builds
that need the CUDA build of torch, ``pip install torch==2.14.1 torchvision==0.29.1`` (runs on CPU too).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .._optional import require
from ..errors import InputError
from ..io.frames import Frame
from ._hf import image_stats, load_pretrained, to_pixels
from .maps import DenseFeatures

RULES = ("instances", "semantic")
INSTALL = "pip install torch==2.14.1 torchvision==0.29.1"


@dataclass(frozen=True, eq=False)
class Sam3Frame:
    """One frame's SAM 3 output at mask resolution ``(h, w)``.

    Attributes:
        scores: ``(C, h, w) float32`` per-pixel class scores in [0, 1] (module docstring).
        masks: ``(K, h, w) bool`` instance masks whose score exceeds the instance threshold.
        classes: ``(K,) int64`` vocabulary index of each instance.
        instance_scores: ``(K,) float32`` their scores ``sigmoid(pred_logits) * sigmoid(presence)``.
    """

    scores: torch.Tensor
    masks: torch.Tensor
    classes: torch.Tensor
    instance_scores: torch.Tensor


class Sam3Encoder:
    """SAM 3 class scores per frame (module docstring); an image encoder and the text encoder of its scores.

    Args:
        source: ``save_pretrained`` folder of a ``Sam3Model`` with its tokenizer, or a hub id where the
            network allows (``facebook/sam3``).
        vocabulary: the class prompts (default: set by lifting).
        device, dtype: torch device; weights' dtype (``auto``: float16 on CUDA, float32 elsewhere).
        rule: per-pixel class score rule, ``instances`` or ``semantic``.
        prompt_batch: prompts run against one frame's vision features at a time.
        instance_threshold, mask_threshold: instances kept in :class:`Sam3Frame` (as SAM 3's post-processing).
        logit_scale: scale of consensus fusion's logits.
    """

    name = "sam3"
    template = "{}"

    def __init__(self, source: str | os.PathLike[str], vocabulary: list[str] | str | None = None, device: str = "cpu",
                 dtype: str = "auto", rule: str = "instances", prompt_batch: int = 16, instance_threshold: float = 0.3,
                 mask_threshold: float = 0.5, logit_scale: float = 50.0) -> None:
        if rule not in RULES:
            raise InputError(f"unknown sam3 rule {rule!r}; choose one of {', '.join(RULES)}")
        if prompt_batch < 1:
            raise InputError(f"prompt_batch must be >= 1, got {prompt_batch}")
        require("torchvision", "sam3", feature=f"the sam3 encoder (transformers' SAM 3 needs torchvision: {INSTALL})")
        self.model, self.tokenizer = load_pretrained(("Sam3Model",), source, "SAM 3 model", "sam3", "the sam3 encoder",
                                                     device, dtype)
        self.source, self.device, self.rule = str(source), device, rule
        self.prompt_batch, self.logit_scale = prompt_batch, logit_scale
        self.instance_threshold, self.mask_threshold = instance_threshold, mask_threshold
        self.image_size = int(self.model.config.vision_config.image_size)
        self.mean, self.std = image_stats(source, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        self.text_max_length = int(self.model.config.text_config.max_position_embeddings)
        self.vocabulary: list[str] | None = None
        self._text: tuple[torch.Tensor, torch.Tensor] | None = None
        self.text_encoder = self
        if vocabulary is not None:
            self.set_vocabulary(vocabulary.split(",") if isinstance(vocabulary, str) else list(vocabulary))

    @property
    def dim(self) -> int | None:
        return None if self.vocabulary is None else len(self.vocabulary)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def set_vocabulary(self, names: list[str]) -> None:
        """Use ``names`` as the class prompts (text embeddings are computed again on the next frame)."""
        names = [str(n).strip() for n in names]
        if not names or any(not n for n in names) or len(set(names)) != len(names):
            raise InputError(f"sam3 needs distinct, non-empty class prompts, got {names}")
        if names != self.vocabulary:
            self.vocabulary, self._text = names, None

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``(len(texts), C)``: the one-hot row of each text's channel in the class-score space."""
        if self.vocabulary is None:
            raise InputError("sam3 features are scores of the vocabulary they were lifted with: build the encoder "
                             "with vocabulary=... (those words) or lift with --vocab")
        missing = [t for t in texts if t not in self.vocabulary]
        if missing:
            raise InputError(f"{', '.join(map(repr, missing))} not in the sam3 lift vocabulary "
                             f"({', '.join(self.vocabulary)}): sam3 features are class scores of those prompts; "
                             "lift again with --vocab including these words")
        rows = torch.tensor([self.vocabulary.index(t) for t in texts], dtype=torch.int64)
        return torch.nn.functional.one_hot(rows, len(self.vocabulary)).to(torch.float32)

    @torch.inference_mode()
    def _text_embeds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The vocabulary's projected text tokens ``(C, L, E)`` and attention mask ``(C, L)``, once per vocabulary."""
        if self.vocabulary is None:
            raise InputError("sam3 needs class prompts: pass vocabulary=... or lift with --vocab")
        if self._text is None:
            tok = self.tokenizer(self.vocabulary, padding="max_length", max_length=self.text_max_length,
                                 truncation=True, return_tensors="pt").to(self.device)
            out = self.model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"],
                                               return_dict=True)
            self._text = (out.pooler_output, tok["attention_mask"])
        return self._text

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """``(H, W, 3) uint8`` -> ``(1, 3, S, S)``: resized (bilinear) to the model's square input, normalised."""
        return to_pixels(image, (self.image_size, self.image_size), self.mean, self.std, self.device, self.dtype,
                         mode="bilinear")

    @torch.inference_mode()
    def segment(self, pixel_values: torch.Tensor) -> Sam3Frame:
        """Class scores and instances of one preprocessed frame ``(1, 3, S, S)`` (module docstring)."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        text, mask = self._text_embeds()
        vision = self.model.get_vision_features(pixel_values=pixel_values)
        scores, inst = [], []
        for lo in range(0, len(self.vocabulary), self.prompt_batch):
            hi = min(lo + self.prompt_batch, len(self.vocabulary))
            vis = type(vision)(**{k: tuple(t.expand(hi - lo, *t.shape[1:]) for t in v) if isinstance(v, tuple)
                                  else v.expand(hi - lo, *v.shape[1:]) for k, v in vision.items()})
            txt = BaseModelOutputWithPooling(pooler_output=text[lo:hi])      # what the model reads of text_embeds
            out = self.model(vision_embeds=vis, text_embeds=txt, attention_mask=mask[lo:hi])
            s = (out.pred_logits.float().sigmoid() * out.presence_logits.float().sigmoid())       # (c, Q)
            m = out.pred_masks.float().sigmoid()                                                  # (c, Q, h, w)
            if self.rule == "instances":
                scores.append((s[:, :, None, None] * m).amax(1))
            else:
                scores.append(out.semantic_seg.float().sigmoid()[:, 0])
            inst.append((s, m))
        s_all = torch.cat([s for s, _ in inst])
        m_all = torch.cat([m for _, m in inst])
        keep = s_all > self.instance_threshold                                                    # (C, Q)
        cls = torch.arange(len(self.vocabulary), device=keep.device)[:, None].expand_as(keep)[keep]
        return Sam3Frame(torch.cat(scores).cpu(), (m_all[keep] > self.mask_threshold).cpu(), cls.cpu(),
                         s_all[keep].cpu())

    def encode_frame(self, frame: Frame) -> DenseFeatures:
        """``(h, w, C)`` class scores over the frame (the square input covers the whole image)."""
        return DenseFeatures(self.segment(self.preprocess(frame.image)).scores.permute(1, 2, 0).contiguous())
