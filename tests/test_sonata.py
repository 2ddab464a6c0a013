"""The native Sonata / PTv3 teacher against the official implementation's golden outputs and oracles."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from geopurify.errors import InputError
from geopurify.io.scene import Scene
from geopurify.teachers import get_teacher, teacher_features
from geopurify.teachers.sonata import build_model, prepare, upcast
from geopurify.teachers.sonata.checkpoint import native_state_dict, spconv_to_native
from geopurify.teachers.sonata.config import PTv3Config
from geopurify.teachers.sonata.features import center_shift
from geopurify.teachers.sonata.model import PointTransformerV3, patch_attention, patch_index
from geopurify.teachers.sonata.serialization import encode, hilbert_order, z_order
from real_crops import column_crop, crop_digest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def golden() -> dict:
    """Weights, config and the official outputs; no points (see :func:`official_input`)."""
    return torch.load(FIXTURES / "sonata_golden.pt", weights_only=True)


def _digest(*tensors: torch.Tensor) -> str:
    return hashlib.sha256(b"".join(t.contiguous().numpy().tobytes() for t in tensors)).hexdigest()


@pytest.fixture(scope="module")
def official_input(golden: dict, shared_data: Path) -> dict:
    """The official run's input, rebuilt from the real crop in ../shared/data and the fixture's indices of the
    points the official grid sampling kept; both are checked against the fixture's digests."""
    spec = golden["crop"]
    raw = {k: torch.from_numpy(v) for k, v in column_crop(shared_data / spec["scan"], spec["size"]).items()}
    assert crop_digest({k: raw[k].numpy() for k in ("coord", "color")}) == spec["digest"], "the shared scan changed"
    kept = golden["kept"]
    inp = prepare(raw["coord"], raw["color"] / 255.0, raw["normal"])
    grid = inp.grid[inp.inverse[kept]]
    feat = torch.cat([center_shift(raw["coord"]), raw["color"] / 255.0, raw["normal"]], 1)[kept]
    assert _digest(grid, feat) == golden["input_digest"], "rebuilt input differs from the official run's"
    return {"raw": raw, "grid_coord": grid, "feat": feat, "inverse": golden["inverse"]}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_golden_outputs_match_official(golden: dict, official_input: dict) -> None:
    """Seeded random weights of a 4-stage, 4-order config on a real ScanNet crop: the official code's
    per-stage and per-point outputs (tools/make_sonata_golden.py) are reproduced to 1e-4 relative."""
    model = build_model({"config": golden["config"], "state_dict": golden["state_dict"]})
    inp = official_input
    stages = model(inp["grid_coord"], inp["feat"])
    assert [s.feat.shape[0] for s in stages] == [s.shape[0] for s in golden["stages"]]
    for s, ref in zip(stages, golden["stages"]):
        assert _rel(s.feat, ref) < 1e-4
    out = upcast(stages)[inp["inverse"]]
    assert out.shape == golden["output"].shape == (len(inp["raw"]["coord"]), 24 + 32 + 40)
    assert _rel(out, golden["output"]) < 1e-4


def test_mixed_precision_runs(golden: dict, official_input: dict) -> None:
    """The autocast path the teacher takes on CUDA (fp16) runs here as bf16 on CPU: same code, close output."""
    model = build_model({"config": golden["config"], "state_dict": golden["state_dict"]})
    inp = official_input
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = upcast(model(inp["grid_coord"], inp["feat"])).float()[inp["inverse"]]
    assert _rel(out, golden["output"]) < 5e-2


def test_golden_exercises_every_path(golden: dict) -> None:
    cfg = golden["config"]
    assert set(cfg["order"]) == {"z", "z-trans", "hilbert", "hilbert-trans"}
    assert max(cfg["enc_depths"]) >= len(cfg["order"]) and len(cfg["enc_depths"]) >= 3
    for stage, k in zip(golden["stages"], cfg["enc_patch_size"]):
        assert stage.shape[0] > k and stage.shape[0] % k != 0      # several patches, last one padded
    assert cfg["layer_scale"] is not None and not cfg["shuffle_orders"]


def test_released_config_key_set() -> None:
    """The native model built from Sonata's released config has exactly the official key set and shapes."""
    rec = json.loads((FIXTURES / "sonata_keys.json").read_text())
    with torch.device("meta"):
        model = PointTransformerV3(PTv3Config.from_dict(rec["config"]))
    official = {k: torch.empty(v, device="meta") for k, v in rec["keys"].items()}
    expected = {k: tuple(v.shape) for k, v in native_state_dict(official).items()}
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert own == expected
    assert sum(int(np.prod(s)) for s in own.values()) == pytest.approx(108.5e6, rel=2e-3)


def test_checkpoint_errors_name_keys(golden: dict) -> None:
    sd = dict(golden["state_dict"])
    sd.pop("enc.enc1.block0.attn.qkv.weight")
    sd["enc.enc9.extra"] = torch.zeros(1)
    with pytest.raises(InputError, match=r"missing keys: enc\.enc1\.block0\.attn\.qkv\.weight.*"
                                         r"unexpected keys: enc\.enc9\.extra"):
        build_model({"config": golden["config"], "state_dict": sd})
    with pytest.raises(InputError, match=r"unknown key\(s\) \['bogus'\]"):
        build_model({"config": {**golden["config"], "bogus": 1}, "state_dict": golden["state_dict"]})
    with pytest.raises(InputError, match="enc_mode"):
        build_model({"config": {**golden["config"], "enc_mode": False}, "state_dict": golden["state_dict"]})
    with pytest.raises(InputError, match="'config' and 'state_dict'"):
        build_model(golden["state_dict"])
    bad = dict(golden["state_dict"])
    bad["embedding.stem.linear.weight"] = torch.zeros(3, 3)
    with pytest.raises(InputError, match="wrong shape: embedding.stem.linear.weight"):
        build_model({"config": golden["config"], "state_dict": bad})


def test_spconv_layout_mapping() -> None:
    w = torch.arange(2 * 27 * 3, dtype=torch.float32).view(2, 3, 3, 3, 3)     # (out, kx, ky, kz, in)
    n = spconv_to_native(w)
    assert n.shape == (27, 3, 2)
    assert torch.equal(n[2 * 9 + 0 * 3 + 1, 1, 0], w[0, 2, 0, 1, 1])          # offset (+1, -1, 0)


def test_prepare_matches_official_grid_sample(official_input: dict) -> None:
    """Same voxels, same point-to-voxel partition, same centre shift as sonata.transform.default()."""
    raw, off = official_input["raw"], official_input
    inp = prepare(raw["coord"], raw["color"] / 255.0, raw["normal"])
    order = torch.argsort(z_order(inp.grid, 16))
    off_order = torch.argsort(z_order(off["grid_coord"].long(), 16))
    assert torch.equal(inp.grid[order], off["grid_coord"].long()[off_order])
    assert torch.equal(inp.grid[inp.inverse], off["grid_coord"].long()[off["inverse"]])
    # official kept a random point per voxel: its centred xyz is exactly one of the input points', in that voxel
    centred = center_shift(raw["coord"]).double()
    nearest = torch.cdist(off["feat"][:, :3].double(), centred).min(1)
    assert float(nearest.values.max()) < 1e-5
    voxel_of_kept = inp.inverse[nearest.indices]
    assert torch.equal(inp.grid[voxel_of_kept], off["grid_coord"].long())
    assert torch.allclose(off["feat"][:, 3:6], raw["color"][nearest.indices] / 255.0)      # colour in [0, 1]
    assert torch.equal(inp.feat[:, :3], center_shift(raw["coord"])[inp.index])


def test_serialization_known_answers() -> None:
    g = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [3, 5, 6]])
    assert z_order(g, 3).tolist() == [4, 2, 1, 0b011_101_110]
    assert torch.equal(encode(g, 3, "z-trans"), z_order(g[:, [1, 0, 2]], 3))
    for depth in (1, 2, 3):
        n = 1 << depth
        cube = torch.cartesian_prod(torch.arange(n), torch.arange(n), torch.arange(n))
        h = hilbert_order(cube, depth)
        assert sorted(h.tolist()) == list(range(n ** 3))                      # a bijection of the cube
        path = cube[torch.argsort(h)]
        assert bool(((path[1:] - path[:-1]).abs().sum(1) == 1).all())          # face-adjacent steps
        assert path[0].tolist() == [0, 0, 0]


def test_patch_padding_rule() -> None:
    assert patch_index(10, 4).tolist() == list(range(10)) + [6, 7]            # last patch = last 4 voxels
    assert patch_index(8, 4).tolist() == list(range(8))
    assert patch_index(3, 4).tolist() == [0, 1, 2]


def test_patch_attention_oracle_and_chunks() -> None:
    torch.manual_seed(0)
    m, c, heads, k = 37, 8, 2, 8
    qkv, order = torch.randn(m, 3 * c), torch.randperm(m)
    inverse = torch.argsort(order)
    out = patch_attention(qkv, order, inverse, heads, k, 0.5, chunk=2)
    assert torch.allclose(out, patch_attention(qkv, order, inverse, heads, k, 0.5, chunk=100), atol=1e-6)
    seq = qkv[order].view(m, 3, heads, c // heads)
    ref = torch.empty(m, c)
    for pos in range(m):                                                       # naive: each voxel's patch
        start = min(pos // k * k, m - k)
        q = seq[pos, 0]
        keys, vals = seq[start:start + k, 1], seq[start:start + k, 2]
        w = torch.softmax(torch.einsum("hd,khd->hk", q, keys) * 0.5, dim=1)
        ref[order[pos]] = torch.einsum("hk,khd->hd", w, vals).reshape(c)
    assert torch.allclose(out, ref, atol=1e-5)


def test_upcast_concatenates_then_copies() -> None:
    from geopurify.teachers.sonata.model import Stage
    st = [Stage(torch.zeros(4, 3, dtype=torch.long), torch.full((4, 1), 0.0), None),
          Stage(torch.zeros(3, 3, dtype=torch.long), torch.arange(3.0).view(3, 1) + 10, torch.tensor([0, 1, 2, 2])),
          Stage(torch.zeros(2, 3, dtype=torch.long), torch.arange(2.0).view(2, 1) + 20, torch.tensor([0, 1, 1])),
          Stage(torch.zeros(1, 3, dtype=torch.long), torch.full((1, 1), 30.0), torch.tensor([0, 0]))]
    out = upcast(st, levels=2)
    assert out.tolist() == [[10, 20, 30], [11, 21, 30], [12, 21, 30], [12, 21, 30]]


def _small_checkpoint(golden: dict, tmp_path: Path) -> Path:
    path = tmp_path / "small.pth"
    torch.save({"config": golden["config"], "state_dict": golden["state_dict"]}, path)
    return path


def test_teacher_on_shared_scan(golden: dict, tmp_path: Path, shared_data: Path) -> None:
    v = np.load(shared_data / "scannet50k" / "scene0000_01_vert.npy")[:8000]
    xyz = torch.from_numpy(v[:, :3].copy())
    normals = torch.nn.functional.normalize(torch.randn(len(xyz), 3, generator=torch.Generator().manual_seed(0)),
                                            dim=1)
    scene = Scene("scene0000_01", xyz, torch.from_numpy(v[:, 3:6] / 255.0).float(), normals)
    teacher = get_teacher("sonata", path=_small_checkpoint(golden, tmp_path), device="cpu")
    a = teacher(scene)
    assert a.shape == (scene.num_points, teacher.channels) == (8000, 96)
    assert bool(torch.isfinite(a).all()) and torch.equal(a, teacher(scene))
    cached = teacher_features(scene, teacher, tmp_path / "cache")
    assert torch.allclose(cached, torch.nn.functional.normalize(a, dim=1))
    assert len(list((tmp_path / "cache").glob("scene0000_01.sonata.*.npy"))) == 1


def test_teacher_path_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="checkpoint not found"):
        get_teacher("sonata", path=tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read the checkpoint"):
        get_teacher("sonata", path=tmp_path / "junk.pth")


def test_released_config_features_on_shared_scan(shared_data: Path) -> None:
    """The released architecture (random weights: none can be downloaded here) on a real scan's column:
    per point, 1088-d, finite, deterministic."""
    rec = json.loads((FIXTURES / "sonata_keys.json").read_text())
    model = PointTransformerV3(PTv3Config.from_dict(rec["config"])).eval()
    v = np.load(shared_data / "scannet50k" / "scene0000_02_vert.npy")
    v = v[np.all(np.abs(v[:, :2] - np.median(v[:, :2], 0)) < 1.0, axis=1)]     # a 2 m x 2 m column
    xyz = torch.from_numpy(v[:, :3].copy())
    normals = torch.zeros_like(xyz)
    normals[:, 2] = 1
    inp = prepare(xyz, torch.from_numpy(v[:, 3:6] / 255.0).float(), normals)
    feats = [upcast(model(inp.grid, inp.feat))[inp.inverse] for _ in range(2)]
    assert feats[0].shape == (len(v), 1088) and len(v) > 1000
    assert bool(torch.isfinite(feats[0]).all()) and torch.equal(feats[0], feats[1])
