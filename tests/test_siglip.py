"""The siglip encoder on tiny randomly initialised SigLIP / SigLIP 2 models saved and loaded in the test."""

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from geopurify import InputError  # noqa: E402
from geopurify.encoders import encode_vocabulary, get_encoder  # noqa: E402
from geopurify.io import Frame  # noqa: E402
from tiny_models import SIGLIP_DIM, make_siglip, make_siglip2  # noqa: E402

E = SIGLIP_DIM


@pytest.fixture(scope="module")
def tiny_siglip(tmp_path_factory):
    return make_siglip(tmp_path_factory.mktemp("tiny_siglip"))


@pytest.fixture(scope="module")
def tiny_siglip2(tmp_path_factory):
    return make_siglip2(tmp_path_factory.mktemp("tiny_siglip2"))


def _manual_head_values(head, z):
    """The head's value path per token, by hand from nn.MultiheadAttention's packed weights, plus its MLP residual."""
    w, b = head.attention.in_proj_weight, head.attention.in_proj_bias
    y = (z @ w[2 * E:].T + b[2 * E:]) @ head.attention.out_proj.weight.T + head.attention.out_proj.bias
    m = head.layernorm(y)
    m = head.mlp.fc2(torch.nn.functional.gelu(head.mlp.fc1(m), approximate="tanh"))
    return y + m


def test_dense_features_match_a_manual_computation(tiny_siglip):
    enc = get_encoder("siglip", source=tiny_siglip)
    assert enc.dim == E and enc.mean == (0.5, 0.5, 0.5) and not enc.naflex and enc.short_side == 32
    m = transformers.SiglipModel.from_pretrained(tiny_siglip).eval()
    vm = m.vision_model
    x = torch.randn(1, 3, 32, 48)   # non-square: 4 x 6 patches, interpolated position embeddings
    got = enc.dense_features(x)
    assert got.shape == (1, 4, 6, E)
    with torch.no_grad():
        patches = vm.embeddings.patch_embedding(x).flatten(2).transpose(1, 2)           # (1, 24, E), no class token
        grid = vm.embeddings.position_embedding.weight.reshape(1, 4, 4, E).permute(0, 3, 1, 2)
        grid = torch.nn.functional.interpolate(grid, size=(4, 6), mode="bicubic", align_corners=False)
        h = patches + grid.permute(0, 2, 3, 1).reshape(1, 24, E)
        for layer in vm.encoder.layers:
            a = layer.layer_norm1(h)
            q, k, v = (p(a).view(1, 24, 4, 8).transpose(1, 2) for p in
                       (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj))
            att = torch.softmax(q @ k.transpose(2, 3) / 8 ** 0.5, -1) @ v
            h = h + layer.self_attn.out_proj(att.transpose(1, 2).reshape(1, 24, E))
            h = h + layer.mlp(layer.layer_norm2(h))
        ref = _manual_head_values(vm.head, vm.post_layernorm(h)).reshape(1, 4, 6, E)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_a_one_patch_image_gives_the_pooled_embedding(tiny_siglip):
    """With one patch the probe attends to it alone, so the dense feature is the pooled image embedding."""
    enc = get_encoder("siglip", source=tiny_siglip)
    x = torch.randn(2, 3, 8, 8)
    dense = torch.nn.functional.normalize(enc.dense_features(x).reshape(2, E), dim=1)
    torch.testing.assert_close(dense, enc.embed_images(x), atol=1e-5, rtol=1e-5)
    m = transformers.SiglipModel.from_pretrained(tiny_siglip).eval()
    x32 = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        full = m.get_image_features(pixel_values=x32).pooler_output
    torch.testing.assert_close(enc.embed_images(x32), torch.nn.functional.normalize(full, dim=1))


def test_text_tower_template_and_logit_scale(tiny_siglip):
    enc = get_encoder("siglip", source=tiny_siglip)
    t = encode_vocabulary(enc, ["chair", "table"])
    torch.testing.assert_close(t, enc.encode_text(["This is a photo of chair.", "This is a photo of table."]))
    m = transformers.SiglipModel.from_pretrained(tiny_siglip).eval()
    ids = enc.tokenizer(["This is a photo of chair."], padding="max_length", max_length=12, return_tensors="pt")
    assert ids["input_ids"].shape == (1, 12) and ids["input_ids"][0, 7:].tolist() == [2, 0, 0, 0, 0]  # end, padding
    with torch.no_grad():
        ref = m.get_text_features(input_ids=ids["input_ids"]).pooler_output
    torch.testing.assert_close(t[:1], torch.nn.functional.normalize(ref, dim=1))
    assert t.shape == (2, E) and not torch.allclose(t[0], t[1])
    assert enc.logit_scale == pytest.approx(float(np.exp(2.0))) and enc.logit_bias == pytest.approx(-3.0)


def test_encode_frame_reads_the_patch_under_each_pixel(tiny_siglip):
    enc = get_encoder("siglip", source=tiny_siglip)
    img = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    ff = enc.encode_frame(Frame("f", img, np.array([[50.0, 0, 39.5], [0, 50.0, 29.5], [0, 0, 1]]), np.eye(4)))
    assert ff.features.shape == (4, 5, E)     # 32 x 40 input: aspect kept, multiples of 8
    feats, valid = ff.gather(torch.tensor([[0, 0], [59, 79]]), (80, 60))
    assert torch.equal(feats[0], ff.features[0, 0]) and torch.equal(feats[1], ff.features[3, 4]) and valid.all()


def test_siglip2_patchifies_as_its_processor_and_resizes_positions(tiny_siglip2):
    enc = get_encoder("siglip", source=tiny_siglip2)
    assert enc.naflex and enc.short_side == 32
    m = transformers.Siglip2Model.from_pretrained(tiny_siglip2).eval()
    x = torch.randn(1, 3, 24, 40)       # 3 x 5 patches
    # the image processor's patch order: (rows, cols, patch row, patch col, channel)
    flat = x[0].reshape(3, 3, 8, 5, 8).permute(1, 3, 2, 4, 0).reshape(1, 15, 192)
    with torch.no_grad():
        out = m.vision_model(pixel_values=flat, pixel_attention_mask=torch.ones(1, 15, dtype=torch.long),
                             spatial_shapes=torch.tensor([[3, 5]]))
        ref = _manual_head_values(m.vision_model.head, out.last_hidden_state).reshape(1, 3, 5, E)
        pooled = torch.nn.functional.normalize(out.pooler_output, dim=1)
    torch.testing.assert_close(enc.dense_features(x), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(enc.embed_images(x), pooled, atol=1e-5, rtol=1e-5)


def test_bad_options_and_folders_are_one_clear_error(tiny_siglip, tmp_path):
    with pytest.raises(InputError, match="unknown attention rule 'sharp'"):
        get_encoder("siglip", source=tiny_siglip, attention="sharp")
    with pytest.raises(InputError, match="unknown dtype 'float8'"):
        get_encoder("siglip", source=tiny_siglip, dtype="float8")
    with pytest.raises(InputError, match="SigLIP model folder not found"):
        get_encoder("siglip", source=str(tmp_path / "missing") + "/")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: cannot load a SigLIP model"):
        get_encoder("siglip", source=tmp_path / "empty")


def test_clearclip_mixes_the_head_values_by_query_query_attention_and_drops_its_mlp(tiny_siglip):
    mask = get_encoder("siglip", source=tiny_siglip)
    clear = get_encoder("siglip", source=tiny_siglip, attention="clearclip")
    x = torch.randn(1, 3, 32, 48)
    got = clear.dense_features(x)
    head = clear.model.vision_model.head
    with torch.no_grad():
        z = mask._tokens(x)
        w, b = head.attention.in_proj_weight, head.attention.in_proj_bias
        q = (z @ w[:E].T + b[:E]).view(1, 24, 4, 8).transpose(1, 2)
        v = (z @ w[2 * E:].T + b[2 * E:]).view(1, 24, 4, 8).transpose(1, 2)
        mixed = (torch.softmax(q @ q.transpose(2, 3) / 8 ** 0.5, -1) @ v).transpose(1, 2).reshape(1, 24, E)
        ref = head.attention.out_proj(mixed).reshape(1, 4, 6, E)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    base = mask.dense_features(x)
    with torch.no_grad():       # the head's MLP enters MaskCLIP's rule only; its probe enters neither
        for enc in (mask, clear):
            enc.model.vision_model.head.mlp.fc2.weight.mul_(2.0)
            enc.model.vision_model.head.probe.mul_(2.0)
    torch.testing.assert_close(clear.dense_features(x), got)
    assert not torch.allclose(mask.dense_features(x), base, atol=1e-4)


@pytest.mark.parametrize("model", ["tiny_siglip", "tiny_siglip2"])
def test_encode_frames_equals_encode_frame_per_frame_for_mixed_sizes(request, model):
    enc = get_encoder("siglip", source=request.getfixturevalue(model))
    rng = np.random.default_rng(3)
    K = np.array([[50.0, 0, 39.5], [0, 50.0, 29.5], [0, 0, 1]])
    shapes = [(60, 80), (80, 60), (48, 64), (60, 80)]        # 32 x 40, 40 x 32, 32 x 40, 32 x 40 inputs
    frames = [Frame(f"f{i}", torch.from_numpy(rng.integers(0, 255, (*s, 3), dtype=np.uint8)), K, np.eye(4))
              for i, s in enumerate(shapes)]
    calls = []
    forward = enc.dense_features
    enc.dense_features = lambda x: calls.append(tuple(x.shape)) or forward(x)
    batched = enc.encode_frames(frames)
    assert calls == [(3, 3, 32, 40), (1, 3, 40, 32)]
    for frame, b in zip(frames, batched):
        torch.testing.assert_close(b.features, enc.encode_frame(frame).features, atol=1e-5, rtol=1e-5)
    assert [b.features.shape for b in batched] == [(4, 5, E), (5, 4, E), (4, 5, E), (4, 5, E)]
