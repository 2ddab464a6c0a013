"""The student network: shapes, presets, input building, checkpoints."""

import pytest
import torch

from geopurify import InputError
from geopurify.geometry import voxelize
from geopurify.sim import make_room
from geopurify.student import (
    PRESETS,
    build_student,
    load_student,
    save_student,
    student_config,
    student_inputs,
)
from geopurify.student.sparse import build_pyramid


@pytest.fixture(scope="module")
def room():
    return make_room(seed=2, density=120)


def test_upstream_preset_has_the_official_parameter_count():
    # spec section 4: 518 -> 512 k=3 stem, 4 blocks of two 512x512 k=3 convs, 512 -> 128 head, BN
    model = build_student(student_config("upstream", 512))
    convs = 27 * 518 * 512 + 8 * 27 * 512 * 512 + 512 * 128
    norms = 9 * 2 * 512
    assert sum(p.numel() for p in model.parameters()) == convs + norms
    assert abs(convs + norms - 63.9e6) < 0.1e6


def test_student_inputs_are_voxel_means_with_unit_semantics(room):
    grid = voxelize(room.coords, 0.3)                      # many points per voxel
    sem = torch.randn(room.num_points, 8) * 3
    x = student_inputs(grid, sem, room.colors, room.normals)
    assert x.shape == (grid.num_voxels, 14)
    torch.testing.assert_close(x[:, :8].norm(dim=1), torch.ones(grid.num_voxels))
    for v in range(grid.num_voxels):                       # naive loop: every voxel from its member points
        members = grid.inverse == v
        torch.testing.assert_close(x[v, :8], torch.nn.functional.normalize(sem[members].mean(0), dim=0))
        torch.testing.assert_close(x[v, 8:11], room.colors[members].mean(0))
        torch.testing.assert_close(x[v, 11:], room.normals[members].mean(0))


@pytest.mark.parametrize(("norm", "levels"), [("batch", 0), ("layer", 0), ("layer", 2)])
def test_forward_gives_unit_embeddings_and_gradients(room, norm, levels):
    cfg = student_config("cpu", 8, hidden=16, embed_dim=12, norm=norm, levels=levels)
    model = build_student(cfg, seed=0)
    grid = voxelize(room.coords, 0.05)
    x = student_inputs(grid, torch.randn(room.num_points, 8), room.colors, room.normals)
    e = model(x, model.pyramid(grid.coords))
    assert e.shape == (grid.num_voxels, 12)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(len(e)))
    e[:, 0].sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="input channels"):
        model(x[:, :5], model.pyramid(grid.coords))
    with pytest.raises(ValueError, match="coarse levels"):
        model(x, build_pyramid(grid.coords, 3, levels + 1))


def test_unet_student_sees_beyond_its_plain_receptive_field(room):
    """A change 60 cm away reaches a voxel only through the coarse levels (plain net, one block: 10 cm)."""
    grid = voxelize(room.coords, 0.05)
    x = student_inputs(grid, torch.randn(room.num_points, 8), room.colors, room.normals)
    far = (grid.coords - grid.coords[0]).abs().max(1).values > 12           # > 60 cm from voxel 0
    y = x.clone()
    y[far] += 1.0
    for levels, changes in [(0, False), (3, True)]:
        model = build_student(student_config("cpu", 8, hidden=16, blocks=1, levels=levels), seed=0).eval()
        with torch.no_grad():
            a, b = model(x, model.pyramid(grid.coords)), model(y, model.pyramid(grid.coords))
        assert bool((a[0] - b[0]).abs().max() > 1e-6) == changes


def test_seeded_build_is_deterministic():
    cfg = student_config("cpu", 8)
    a, b = build_student(cfg, seed=3), build_student(cfg, seed=3)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert set(PRESETS) == {"upstream", "cpu"}


def test_checkpoint_round_trip_and_errors(room, tmp_path):
    model = build_student(student_config("cpu", 8, hidden=16), seed=1)
    grid = voxelize(room.coords, 0.05)
    sem = torch.randn(room.num_points, 8)
    path = tmp_path / "student.pt"
    save_student(model, path)
    loaded = load_student(path)
    assert loaded.config == model.config and not loaded.training
    torch.testing.assert_close(loaded.embed(grid, sem, room.colors, room.normals),
                               model.embed(grid, sem, room.colors, room.normals))
    with pytest.raises(InputError, match="not found"):
        load_student(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read"):
        load_student(bad)
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not a geopurify student"):
        load_student(tmp_path / "other.pt")
    state = torch.load(path, weights_only=True)
    state["config"]["levels"] = -1
    torch.save(state, tmp_path / "badconfig.pt")
    with pytest.raises(InputError, match="unreadable student config"):
        load_student(tmp_path / "badconfig.pt")
