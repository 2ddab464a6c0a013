"""Teachers: descriptor known answers, registry, cache, precomputed files."""

import numpy as np
import pytest
import torch

from geopurify import InputError, Scene
from geopurify.sim import make_room
from geopurify.teachers import get_teacher, teacher_features
from geopurify.teachers.geometric import fpfh, shape_features, srgb_to_lab


def grid_plane(n=40, step=0.02, vertical=False):
    u, v = torch.meshgrid(torch.arange(n) * step, torch.arange(n) * step, indexing="ij")
    u, v = u.reshape(-1), v.reshape(-1)
    z = torch.zeros_like(u)
    return torch.stack([u, z, v], 1) if vertical else torch.stack([u, v, z], 1)


def test_shape_features_of_a_plane_and_a_line():
    f = shape_features(grid_plane(), 0.1)
    inner = f[(f[:, 1] > 0)]
    assert float(inner[:, 1].median()) > 0.7          # planarity
    assert float(inner[:, 2].median()) < 0.01         # scattering
    assert float(f[:, 3].median()) < 0.01             # horizontal plane: normal vertical -> verticality 0
    fv = shape_features(grid_plane(vertical=True), 0.1)
    assert float(fv[:, 3].median()) > 0.99            # wall
    line = torch.stack([torch.arange(100) * 0.01, torch.zeros(100), torch.zeros(100)], 1)
    assert float(shape_features(line, 0.1)[:, 0].median()) > 0.99   # linearity


def test_fpfh_is_a_histogram_and_flat_surfaces_agree():
    pts = grid_plane()
    nrm = torch.tensor([[0.0, 0, 1]]).expand(len(pts), 3)
    h = fpfh(pts, nrm, 8, 5)
    assert h.shape == (len(pts), 15)
    torch.testing.assert_close(h.reshape(-1, 3, 5).sum(-1), torch.ones(len(pts), 3))
    torch.testing.assert_close(h[:, 10:15].argmax(1), torch.full((len(pts),), 2))   # theta = 0 -> middle bin


def test_lab_known_values():
    lab = srgb_to_lab(torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    torch.testing.assert_close(lab[0], torch.tensor([100.0, 0.0, 0.0]), atol=0.05, rtol=0)
    torch.testing.assert_close(lab[1], torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(lab[2], torch.tensor([53.24, 80.09, 67.20]), atol=0.1, rtol=0)


@pytest.fixture(scope="module")
def room():
    return make_room(seed=3, density=150)


def test_geometric_teacher_separates_instances_better_than_chance(room):
    f = get_teacher("geometric")(room)
    assert f.shape[0] == room.num_points and torch.isfinite(f).all()
    torch.testing.assert_close(f.norm(dim=1), torch.ones(len(f)))
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, len(f), (300,), generator=g)
    sim = f[a] @ f.T
    sim[torch.arange(300), a] = -2
    best = sim.argmax(1)
    same = (room.instances[best] == room.instances[a]).float().mean()
    chance = (room.instances[a, None] == room.instances[None]).float().mean()
    assert float(same) > 0.7 > 3 * float(chance)


def test_teacher_cache_is_reused_and_keyed_by_settings(room, tmp_path, monkeypatch):
    t = get_teacher("geometric")
    f1 = teacher_features(room, t, tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 1
    monkeypatch.setattr(type(t), "__call__", lambda self, scene: pytest.fail("recomputed despite the cache"))
    torch.testing.assert_close(teacher_features(room, t, tmp_path), f1)
    monkeypatch.undo()
    t2 = get_teacher("geometric", radii=(0.2,))
    f2 = teacher_features(room, t2, tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 2 and f2.shape[1] != f1.shape[1]


def test_precomputed_teacher_files_and_errors(room, tmp_path):
    feats = np.random.default_rng(0).standard_normal((room.num_points, 5)).astype(np.float32)
    np.save(tmp_path / f"{room.name}.npy", feats)
    f = get_teacher("precomputed", path=tmp_path)(room)
    torch.testing.assert_close(f, torch.from_numpy(feats))
    other = Scene(name="other", coords=room.coords[:10], colors=room.colors[:10], normals=room.normals[:10])
    with pytest.raises(InputError, match="no teacher features for scene 'other'"):
        get_teacher("precomputed", path=tmp_path)(other)
    np.save(tmp_path / "other.npy", feats)
    with pytest.raises(InputError, match=r"expected \(10, D\)"):
        get_teacher("precomputed", path=tmp_path)(other)
    with pytest.raises(InputError, match="not found"):
        get_teacher("precomputed", path=tmp_path / "nope")
    with pytest.raises(KeyError, match="available: geometric, precomputed"):
        get_teacher("sonata-xl")
