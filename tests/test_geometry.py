import itertools

import numpy as np
import pytest
import torch

from geopurify.geometry import (
    MORTON_BITS,
    estimate_normals,
    knn,
    mesh_vertex_normals,
    morton_code,
    orient_normals,
    scatter_mean,
    voxelize,
)


def _morton_loop(x, y, z):
    code = 0
    for bit in range(MORTON_BITS):
        code |= ((x >> bit) & 1) << (3 * bit)
        code |= ((y >> bit) & 1) << (3 * bit + 1)
        code |= ((z >> bit) & 1) << (3 * bit + 2)
    return code


def test_morton_code_matches_bit_loop(rng):
    g = rng.integers(0, 1 << MORTON_BITS, size=(300, 3))
    g[0] = (1 << MORTON_BITS) - 1
    got = morton_code(torch.from_numpy(g)).tolist()
    assert got == [_morton_loop(*map(int, row)) for row in g]
    with pytest.raises(ValueError):
        morton_code(torch.tensor([[-1, 0, 0]]))


@pytest.mark.parametrize("n,voxel_size", list(itertools.product([1, 50, 2000], [0.02, 0.1, 0.37])))
def test_voxelize_matches_naive_loop(n, voxel_size, rng):
    pts = torch.from_numpy(rng.uniform(-1, 2, size=(n, 3)).astype(np.float32))
    grid = voxelize(pts, voxel_size)
    origin = pts.to(torch.float64).min(0).values.numpy()
    # naive oracle: dictionary of integer keys
    members: dict[tuple[int, int, int], list[int]] = {}
    for i, p in enumerate(pts.to(torch.float64).numpy()):
        key = tuple(int(v) for v in np.floor((p - origin) / voxel_size))
        members.setdefault(key, []).append(i)
    assert grid.num_voxels == len(members)
    for j, key in enumerate(map(tuple, grid.coords.tolist())):
        idx = members[key]
        assert sorted(torch.nonzero(grid.inverse == j).flatten().tolist()) == idx
        assert int(grid.counts[j]) == len(idx)
    codes = morton_code(grid.coords)
    assert (codes[1:] > codes[:-1]).all(), "voxels are sorted by Morton code"
    # deterministic, and independent of the point order
    perm = torch.from_numpy(rng.permutation(n))
    grid2 = voxelize(pts[perm], voxel_size)
    assert torch.equal(grid2.coords, grid.coords)
    assert torch.equal(grid2.inverse, grid.inverse[perm])


def test_voxel_centres_and_round_trip(rng):
    pts = torch.from_numpy(rng.uniform(0, 1, size=(500, 3)).astype(np.float32))
    grid = voxelize(pts, 0.1)
    assert ((grid.to_points(grid.centers) - pts).abs() <= 0.05 + 1e-5).all()
    feats = torch.randn(500, 4)
    vox = grid.to_voxels(feats)
    for j in range(grid.num_voxels):
        assert torch.allclose(vox[j], feats[grid.inverse == j].mean(0), atol=1e-6)
    # constant per-voxel values survive the round trip exactly
    per_voxel = torch.randn(grid.num_voxels, 2)
    assert torch.allclose(grid.to_voxels(grid.to_points(per_voxel)), per_voxel, atol=1e-6)


def test_scatter_mean_empty_segments_and_1d():
    out = scatter_mean(torch.tensor([1.0, 3.0, 5.0]), torch.tensor([0, 0, 2]), 4)
    assert out.tolist() == [2.0, 0.0, 5.0, 0.0]


def test_voxelize_rejects_bad_input():
    with pytest.raises(ValueError):
        voxelize(torch.zeros(0, 3))
    with pytest.raises(ValueError):
        voxelize(torch.zeros(4, 3), voxel_size=0)


@pytest.mark.parametrize("exclude_self", [False, True])
def test_knn_matches_brute_force(exclude_self, rng):
    pts = torch.from_numpy(rng.normal(size=(300, 3)).astype(np.float32))
    d, idx = knn(pts, pts, 8, exclude_self=exclude_self)
    full = torch.cdist(pts.double(), pts.double())
    if exclude_self:
        full.fill_diagonal_(float("inf"))
    ref_d, ref_i = full.topk(8, largest=False)
    assert torch.allclose(d.double(), ref_d, atol=1e-5)
    assert torch.equal(idx, ref_i)
    if exclude_self:
        assert not (idx == torch.arange(300)[:, None]).any()
    with pytest.raises(ValueError):
        knn(pts, pts, 300, exclude_self=True)


def test_normals_of_a_plane_face_the_viewpoint(rng):
    xy = rng.uniform(-1, 1, size=(2000, 2))
    pts = torch.from_numpy(np.c_[xy, 0.001 * rng.normal(size=2000)].astype(np.float32))
    n = estimate_normals(pts, k=12, viewpoint=torch.tensor([0.0, 0.0, 1.0]))
    assert (n[:, 2] > 0.99).all()
    n_down = estimate_normals(pts, k=12, viewpoint=torch.tensor([0.0, 0.0, -1.0]))
    assert (n_down[:, 2] < -0.99).all()
    assert torch.allclose(n.norm(dim=1), torch.ones(2000), atol=1e-5)


def test_normals_of_a_sphere_point_to_the_centre_by_default(rng):
    v = rng.normal(size=(3000, 3))
    pts = torch.from_numpy((v / np.linalg.norm(v, axis=1, keepdims=True) * 2).astype(np.float32))
    n = estimate_normals(pts, k=16)
    cos = (n * -pts / 2).sum(1)
    assert float((cos > 0.98).float().mean()) > 0.99


def test_orient_towards_nearest_of_several_viewpoints():
    pts = torch.tensor([[0.0, 0, 0], [10.0, 0, 0]])
    normals = torch.tensor([[1.0, 0, 0], [1.0, 0, 0]])
    views = torch.tensor([[-1.0, 0, 0], [11.0, 0, 0]])
    out = orient_normals(normals, pts, views)
    assert out.tolist() == [[-1.0, 0, 0], [1.0, 0, 0]]


def test_mesh_vertex_normals_unit_cube():
    v = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)))
    # outward-facing triangles of the cube (counter-clockwise seen from outside)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = torch.tensor([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    n = mesh_vertex_normals(v, faces)
    centre_dir = (v - 0.5) / (v - 0.5).norm(dim=1, keepdim=True)
    assert ((n * centre_dir).sum(1) > 0.5).all()
    assert torch.allclose(n.norm(dim=1), torch.ones(8))
    # an isolated vertex gets +z
    n2 = mesh_vertex_normals(torch.cat([v, torch.zeros(1, 3)]), faces)
    assert n2[-1].tolist() == [0.0, 0.0, 1.0]
