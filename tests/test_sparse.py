"""Sparse convolution against a dense conv3d oracle, forward and backward."""

import pytest
import torch
import torch.nn.functional as F

from geopurify.student.sparse import SparseConv3d, build_kernel_map, build_pyramid, pool, sparse_conv, unpool


def random_voxels(n=120, extent=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.unique(torch.randint(0, extent, (n, 3), generator=g), dim=0)


def dense_oracle(coords, x, weight, extent):
    """Scatter into a dense grid, conv3d with zero padding, read back at the occupied voxels."""
    k = round(weight.shape[0] ** (1 / 3))
    grid = torch.zeros(x.shape[1], extent, extent, extent, dtype=x.dtype)
    grid[:, coords[:, 0], coords[:, 1], coords[:, 2]] = x.T
    w = weight.reshape(k, k, k, weight.shape[1], weight.shape[2]).permute(4, 3, 0, 1, 2)
    out = F.conv3d(grid[None], w, padding=k // 2)[0]
    return out[:, coords[:, 0], coords[:, 1], coords[:, 2]].T


@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_sparse_conv_matches_dense_conv3d_forward_and_backward(kernel):
    coords = random_voxels()
    x = torch.randn(len(coords), 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(kernel ** 3, 4, 5, dtype=torch.float64, requires_grad=True)
    out = sparse_conv(x, build_kernel_map(coords, kernel), w)
    x2, w2 = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    ref = dense_oracle(coords, x2, w2, 7)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(w.grad, w2.grad)


def test_kernel_map_pairs_are_exactly_the_neighbours():
    coords = random_voxels(60, 5, seed=3)
    km = build_kernel_map(coords, 3)
    lookup = {tuple(c.tolist()): i for i, c in enumerate(coords)}
    for o, off in enumerate(km.offsets.tolist()):
        want = sorted((lookup[tuple(c + d for c, d in zip(coords[i].tolist(), off))], i)
                      for i in range(len(coords)) if tuple(c + d for c, d in zip(coords[i].tolist(), off)) in lookup)
        if km.in_idx[o] is None:
            assert off == [0, 0, 0]
            continue
        got = sorted(zip(km.in_idx[o].tolist(), km.out_idx[o].tolist()))
        assert got == want


def test_kernel_map_rejects_duplicates_and_bad_input():
    with pytest.raises(ValueError, match="duplicate"):
        build_kernel_map(torch.tensor([[0, 0, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="odd"):
        build_kernel_map(torch.tensor([[0, 0, 0]]), 2)
    with pytest.raises(ValueError, match="int64"):
        build_kernel_map(torch.zeros(3, 3))


def test_negative_coordinates_and_layer_module():
    coords = random_voxels() - 3
    layer = SparseConv3d(4, 6, 3, bias=True).double()
    x = torch.randn(len(coords), 4, dtype=torch.float64)
    out = layer(x, build_kernel_map(coords, 3))
    ref = dense_oracle(coords + 3, x, layer.weight.detach(), 7) + layer.bias.detach()
    torch.testing.assert_close(out, ref)


def test_pyramid_levels_are_halved_voxels_with_naive_pooling():
    coords = random_voxels(200, 9, seed=5) - 4                # negative coordinates floor correctly
    pyr = build_pyramid(coords, 3, levels=2)
    assert pyr.levels == 2 and len(pyr.maps) == 3 and pyr.maps[0].num_voxels == len(coords)
    x = torch.randn(len(coords), 3, dtype=torch.float64)
    fine_coords, fine_x = coords, x
    for level in range(2):
        parent = pyr.parents[level]
        m = pyr.maps[level + 1].num_voxels
        keys = [tuple(v // 2 for v in c) for c in fine_coords.tolist()]    # naive: group by floor(c / 2)
        coarse = {}
        for i, key in enumerate(keys):
            coarse.setdefault(key, []).append(i)
        assert m == len(coarse)
        # every child has one parent, and children share a parent exactly when their halved coords agree
        for i, j in [(i, j) for i in range(0, len(keys), 7) for j in range(0, len(keys), 5)]:
            assert (parent[i] == parent[j]) == (keys[i] == keys[j])
        pooled = pool(fine_x, pyr, level)
        for members in coarse.values():
            torch.testing.assert_close(pooled[parent[members[0]]], fine_x[members].mean(0))
        up = unpool(pooled, pyr, level)
        torch.testing.assert_close(up, pooled[parent])
        coarse_coords = torch.empty(m, 3, dtype=torch.int64)
        coarse_coords[parent] = torch.div(fine_coords, 2, rounding_mode="floor")
        assert pyr.maps[level + 1].num_pairs == build_kernel_map(coarse_coords, 3).num_pairs
        fine_coords, fine_x = coarse_coords, pooled
    with pytest.raises(ValueError, match="levels"):
        build_pyramid(coords, 3, levels=-1)
