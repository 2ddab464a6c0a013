"""Sparse convolution against a dense conv3d oracle, forward and backward."""

import pytest
import torch
import torch.nn.functional as F

from geopurify.sparse import SparseConv3d, build_kernel_map, sparse_conv


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
