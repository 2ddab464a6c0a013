"""The sam3 encoder on a tiny randomly initialised SAM 3 (needs torchvision: CI runs these in a second venv).

Only the plumbing is checked (random weights): batched prompts against one backbone pass equal one prompt at a
time through the model's own forward, the documented score rules, the class-score space and its errors.
"""

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.sam3
transformers = pytest.importorskip("transformers")
pytest.importorskip("torchvision", reason="transformers' SAM 3 needs torchvision: pip install torch==2.14.1 "
                    "torchvision==0.29.1 (CI runs these tests in a second venv with it)")

from geopurify import InputError  # noqa: E402
from geopurify.encoders import encode_vocabulary, get_encoder  # noqa: E402
from geopurify.io import Frame  # noqa: E402
from tiny_models import make_sam3  # noqa: E402

VOCAB = ["chair", "table", "wall"]


@pytest.fixture(scope="module")
def tiny_sam3(tmp_path_factory):
    return make_sam3(tmp_path_factory.mktemp("tiny_sam3"))


def _frame():
    img = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    return Frame("f", img, np.array([[50.0, 0, 39.5], [0, 50.0, 29.5], [0, 0, 1]]), np.eye(4))


def _one_prompt_at_a_time(enc, frame):
    """The model's own forward, one prompt per call, on the processor's input (bilinear resize to 112, mean/std 0.5)."""
    m = transformers.Sam3Model.from_pretrained(enc.source).eval()
    x = frame.image.permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.interpolate(x, size=(112, 112), mode="bilinear", align_corners=False, antialias=True)
    x = (x - 0.5) / 0.5
    outs = []
    with torch.no_grad():
        for name in VOCAB:
            tok = enc.tokenizer([name], padding="max_length", max_length=16, return_tensors="pt")
            outs.append(m(pixel_values=x, input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]))
    return outs


@pytest.mark.parametrize("rule", ["instances", "semantic"])
def test_batched_prompts_match_the_model_one_prompt_at_a_time(tiny_sam3, rule):
    enc = get_encoder("sam3", source=tiny_sam3, vocabulary=VOCAB, rule=rule, prompt_batch=2, instance_threshold=0.0)
    frame = _frame()
    got = enc.segment(enc.preprocess(frame.image))
    assert got.scores.shape == (3, 32, 32)
    refs, inst = [], []
    for out in _one_prompt_at_a_time(enc, frame):
        s = out.pred_logits[0].sigmoid() * out.presence_logits[0].sigmoid()                     # (Q,)
        m = out.pred_masks[0].sigmoid()                                                        # (Q, 32, 32)
        refs.append((s[:, None, None] * m).amax(0) if rule == "instances" else out.semantic_seg[0, 0].sigmoid())
        inst.append(s)
    torch.testing.assert_close(got.scores, torch.stack(refs), atol=1e-5, rtol=1e-5)
    # threshold 0: every query of every class is an instance, in class order
    assert got.masks.shape == (24, 32, 32) and got.classes.tolist() == [0] * 8 + [1] * 8 + [2] * 8
    torch.testing.assert_close(got.instance_scores, torch.cat(inst), atol=1e-5, rtol=1e-5)
    ff = enc.encode_frame(frame)
    assert ff.features.shape == (32, 32, 3) and torch.equal(ff.features, got.scores.permute(1, 2, 0))


def test_class_score_space_and_its_errors(tiny_sam3):
    enc = get_encoder("sam3", source=tiny_sam3)
    assert enc.dim is None and enc.template == "{}"
    with pytest.raises(InputError, match="sam3 needs class prompts"):
        enc.encode_frame(_frame())
    enc.set_vocabulary(VOCAB)
    assert enc.dim == 3 and enc.text_encoder is enc
    torch.testing.assert_close(encode_vocabulary(enc, ["wall", "chair"]), torch.tensor([[0.0, 0, 1], [1, 0, 0]]))
    with pytest.raises(InputError, match="'sofa' not in the sam3 lift vocabulary .*lift again with --vocab"):
        enc.encode_text(["chair", "sofa"])
    with pytest.raises(InputError, match="distinct"):
        enc.set_vocabulary(["chair", "chair"])
    with pytest.raises(InputError, match="unknown sam3 rule"):
        get_encoder("sam3", source=tiny_sam3, rule="both")


def test_text_embeddings_are_computed_once_per_vocabulary(tiny_sam3, monkeypatch):
    enc = get_encoder("sam3", source=tiny_sam3, vocabulary="chair,table")
    calls = []
    real = enc.model.get_text_features
    monkeypatch.setattr(enc.model, "get_text_features", lambda **kw: calls.append(kw["input_ids"].shape) or real(**kw))
    vision = []
    real_v = enc.model.get_vision_features
    monkeypatch.setattr(enc.model, "get_vision_features", lambda **kw: vision.append(1) or real_v(**kw))
    for _ in range(2):
        enc.encode_frame(_frame())
    enc.set_vocabulary(["wall"])
    enc.encode_frame(_frame())
    assert calls == [(2, 16), (1, 16)] and len(vision) == 3


def test_mask_embed_with_sam_proposals_embeds_the_pipelines_masks(tmp_path_factory, tmp_path):
    from tiny_models import make_clip, make_sam

    sam, clip = make_sam(tmp_path_factory.mktemp("sam")), make_clip(tmp_path_factory.mktemp("clip"))
    opts = dict(points_per_batch=16, points_per_crop=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    enc = get_encoder("mask-embed", source=clip, sam=sam)
    enc.proposals.options.update(opts)
    frame = _frame()
    masks, scores = enc.proposals(frame)
    assert masks.dtype == torch.bool and masks.shape[1:] == (60, 80) and scores.shape == (len(masks),)
    out = enc.encode_frame(frame)
    np.savez(tmp_path / "f.npz", masks=masks.numpy(), scores=scores.numpy())
    same = get_encoder("mask-embed", source=clip, masks=tmp_path).encode_frame(frame)
    assert len(masks) >= 1 and (out.owner >= 0).any()
    assert torch.equal(out.owner, same.owner) and torch.allclose(out.embeddings, same.embeddings, atol=1e-6)
