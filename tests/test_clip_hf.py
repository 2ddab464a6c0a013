"""The clip-hf encoder on a tiny randomly initialised CLIP saved and loaded in the test."""

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from geopurify.encoders import encode_vocabulary, get_encoder  # noqa: E402
from geopurify.io import Frame  # noqa: E402
from tiny_models import make_clip  # noqa: E402


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("tiny_clip"))


def test_dense_features_match_a_manual_maskclip_computation(tiny_clip):
    enc = get_encoder("clip-hf", source=tiny_clip)
    assert enc.dim == 24 and enc.mean == (0.5, 0.5, 0.5)
    m = transformers.CLIPModel.from_pretrained(tiny_clip).eval()
    vm = m.vision_model
    torch.manual_seed(1)
    x = torch.randn(1, 3, 32, 48)  # non-square: 4 x 6 patches, interpolated position embeddings
    got = enc.dense_features(x)
    assert got.shape == (1, 4, 6, 24)
    with torch.no_grad():
        # step by step, by hand: patch embedding, interpolated positions, blocks 1..L-1, MaskCLIP last block
        patches = vm.embeddings.patch_embedding(x).flatten(2).transpose(1, 2)            # (1, 24, 32)
        cls = vm.embeddings.class_embedding.view(1, 1, -1)
        pos = vm.embeddings.position_embedding.weight                                     # (1 + 16, 32)
        grid = pos[1:].reshape(1, 4, 4, 32).permute(0, 3, 1, 2)
        grid = torch.nn.functional.interpolate(grid, size=(4, 6), mode="bicubic", align_corners=False)
        pos_i = torch.cat([pos[:1], grid.permute(0, 2, 3, 1).reshape(24, 32)])
        h = torch.cat([cls, patches], 1) + pos_i
        h = vm.pre_layrnorm(h)
        for layer in vm.encoder.layers[:-1]:
            a = layer.layer_norm1(h)
            q = layer.self_attn.q_proj(a).view(1, 25, 4, 8).transpose(1, 2)
            k = layer.self_attn.k_proj(a).view(1, 25, 4, 8).transpose(1, 2)
            v = layer.self_attn.v_proj(a).view(1, 25, 4, 8).transpose(1, 2)
            att = torch.softmax(q @ k.transpose(2, 3) / 8 ** 0.5, -1) @ v
            h = h + layer.self_attn.out_proj(att.transpose(1, 2).reshape(1, 25, 32))
            h = h + layer.mlp(layer.layer_norm2(h))
        last = vm.encoder.layers[-1]
        dense = last.self_attn.out_proj(last.self_attn.v_proj(last.layer_norm1(h)))
        ref = (vm.post_layernorm(dense) @ m.visual_projection.weight.T)[:, 1:].reshape(1, 4, 6, 24)
    assert torch.allclose(got, ref, atol=1e-4)


def test_encode_frame_and_text(tiny_clip):
    enc = get_encoder("clip-hf", source=tiny_clip, short_side=32)
    img = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    K = np.array([[50.0, 0, 39.5], [0, 50.0, 29.5], [0, 0, 1]])
    ff = enc.encode_frame(Frame("f", img, K, np.eye(4)))
    assert ff.features.shape == (4, 5, 24)  # 32 x 40 input (aspect kept, multiples of 8)
    feats, valid = ff.gather(torch.tensor([[0, 0], [59, 79]]), (80, 60))
    assert torch.equal(feats[0], ff.features[0, 0]) and torch.equal(feats[1], ff.features[3, 4]) and valid.all()
    t = encode_vocabulary(enc, ["chair", "table"])
    torch.testing.assert_close(t, enc.encode_text(["a chair in a scene", "a table in a scene"]))
    assert t.shape == (2, 24) and torch.allclose(t.norm(dim=1), torch.ones(2))
    assert enc.tokenizer("a chair in a scene")["input_ids"][:2] == [2, 4]
    assert not torch.allclose(t[0], t[1])
    assert enc.logit_scale == pytest.approx(float(torch.tensor(2.6592).exp()), rel=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_encoder_on_cuda_gives_the_cpu_features_back_on_the_cpu(tiny_clip):
    img = torch.from_numpy(np.random.default_rng(1).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    frame = Frame("f", img, np.array([[50.0, 0, 39.5], [0, 50.0, 29.5], [0, 0, 1]]), np.eye(4))
    cpu = get_encoder("clip-hf", source=tiny_clip, short_side=32)
    f_cpu, t_cpu = cpu.encode_frame(frame).features, encode_vocabulary(cpu, ["chair", "table"])
    # float32 within TF32 error (cuDNN may run the patch embedding in TF32, about 3e-4); auto = float16 on CUDA
    for dtype, tol in (("float32", 2e-3), ("auto", 2e-2)):
        gpu = get_encoder("clip-hf", source=tiny_clip, short_side=32, device="cuda", dtype=dtype)
        f_gpu, t_gpu = gpu.encode_frame(frame).features, encode_vocabulary(gpu, ["chair", "table"])
        assert f_gpu.device.type == "cpu" and t_gpu.device.type == "cpu" and f_gpu.dtype == torch.float32
        assert float((f_gpu - f_cpu).norm() / f_cpu.norm()) < tol
        assert float((t_gpu - t_cpu).norm() / t_cpu.norm()) < tol


def test_an_unloadable_model_folder_is_one_clear_error(tiny_clip, tmp_path):
    import pickle
    import shutil

    from geopurify import InputError

    bad = tmp_path / "bad-clip"
    shutil.copytree(tiny_clip, bad)
    for f in bad.glob("*.safetensors"):
        f.unlink()

    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))
    (bad / "pytorch_model.bin").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(InputError, match="bad-clip: cannot load a CLIP model"):
        get_encoder("clip-hf", source=bad)
    with pytest.raises(InputError, match="CLIP model folder not found"):
        get_encoder("clip-hf", source=str(tmp_path / "missing") + "/")


def _perturbed(enc, module, name):
    """Doubles the parameter ``name`` of ``enc``'s submodule ``module`` in place; returns the encoder."""
    p = enc.model.get_submodule(module).get_parameter(name)
    with torch.no_grad():
        p.mul_(2.0)
    return enc


def test_clearclip_is_query_query_attention_in_the_last_block_only(tiny_clip):
    """ClearCLIP (Lan et al., ECCV 2024): the last block's values mixed by softmax(q q^T / sqrt(d)), no residual,
    no FFN. It reads the last block's query projection and nothing MaskCLIP does not also read."""
    mask = get_encoder("clip-hf", source=tiny_clip)
    clear = get_encoder("clip-hf", source=tiny_clip, attention="clearclip")
    x = torch.randn(1, 3, 32, 48)
    got = clear.dense_features(x)
    m = clear.model
    with torch.no_grad():
        last = m.vision_model.encoder.layers[-1]
        a = last.layer_norm1(mask._tokens(x))                          # tokens entering the last block (tested above)
        q = last.self_attn.q_proj(a).view(1, 25, 4, 8).transpose(1, 2)
        v = last.self_attn.v_proj(a).view(1, 25, 4, 8).transpose(1, 2)
        mixed = (torch.softmax(q @ q.transpose(2, 3) / 8 ** 0.5, -1) @ v).transpose(1, 2).reshape(1, 25, 32)
        out = m.vision_model.post_layernorm(last.self_attn.out_proj(mixed)) @ m.visual_projection.weight.T
    torch.testing.assert_close(got, out[:, 1:].reshape(1, 4, 6, 24), atol=1e-5, rtol=1e-5)
    base = mask.dense_features(x)
    assert not torch.allclose(got, base, atol=1e-3)
    # the last block's keys and FFN enter neither rule; its queries enter ClearCLIP only
    for enc in (mask, clear):
        _perturbed(enc, "vision_model.encoder.layers.2.self_attn.k_proj", "weight")
        _perturbed(enc, "vision_model.encoder.layers.2.mlp.fc1", "weight")
    torch.testing.assert_close(mask.dense_features(x), base)
    torch.testing.assert_close(clear.dense_features(x), got)
    for enc in (mask, clear):
        _perturbed(enc, "vision_model.encoder.layers.2.self_attn.q_proj", "weight")
    torch.testing.assert_close(mask.dense_features(x), base)
    assert not torch.allclose(clear.dense_features(x), got, atol=1e-4)


def _frames_of_mixed_sizes():
    """Five frames: 60 x 80 and 48 x 64 (both 32 x 40 at short side 32: one batch) and 80 x 60 (40 x 32)."""
    rng = np.random.default_rng(3)
    K = np.array([[50.0, 0, 39.5], [0, 50.0, 29.5], [0, 0, 1]])
    shapes = [(60, 80), (80, 60), (48, 64), (60, 80), (80, 60)]
    return [Frame(f"f{i}", torch.from_numpy(rng.integers(0, 255, (*s, 3), dtype=np.uint8)), K, np.eye(4))
            for i, s in enumerate(shapes)]


@pytest.mark.parametrize("attention", ["maskclip", "clearclip"])
def test_encode_frames_equals_encode_frame_per_frame_for_mixed_sizes(tiny_clip, attention):
    enc = get_encoder("clip-hf", source=tiny_clip, short_side=32, attention=attention)
    frames = _frames_of_mixed_sizes()
    calls = []
    forward = enc.dense_features
    enc.dense_features = lambda x: calls.append(tuple(x.shape)) or forward(x)
    batched = enc.encode_frames(frames)
    assert calls == [(3, 3, 32, 40), (2, 3, 40, 32)]        # one forward pass per input size, frames stacked
    assert [b.features.shape for b in batched] == [(4, 5, 24), (5, 4, 24), (4, 5, 24), (4, 5, 24), (5, 4, 24)]
    for frame, b in zip(frames, batched):
        torch.testing.assert_close(b.features, enc.encode_frame(frame).features, atol=1e-5, rtol=1e-5)
        assert b.features.untyped_storage().nbytes() == b.nbytes      # its own storage, not a view of the batch


@pytest.mark.parametrize("fusion", ["mean", "consensus"])
def test_lifting_in_batches_of_frames_gives_the_frame_by_frame_result(tiny_clip, fusion):
    from geopurify.lifting import LiftConfig, lift_scan
    from geopurify.sim import make_room
    from geopurify.sim.views import SCANNET_K_320, render_views, room_cameras, views_to_frames

    room = make_room(seed=2, density=60)
    K = SCANNET_K_320 * np.array([[0.25], [0.25], [1.0]])
    frames = views_to_frames(render_views(room, room_cameras(room, 6), K=K, size=(80, 60)))
    enc = get_encoder("clip-hf", source=tiny_clip, short_side=32)
    vocab = ["chair", "table", "wall", "floor"]
    one, four = (lift_scan(room, frames, enc, vocabulary=vocab, progress=False,
                           config=LiftConfig(fusion=fusion, batch_frames=b, border=2)) for b in (1, 4))
    assert one.view_counts.sum() > 0 and torch.equal(one.seen, four.seen)
    assert torch.equal(one.view_counts, four.view_counts)
    torch.testing.assert_close(four.features, one.features, atol=1e-5, rtol=1e-5)
    assert four.settings["lift"]["batch_frames"] == 4
