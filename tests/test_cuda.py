"""CUDA gives the CPU's answers: sparse conv, kNN, pooling, pair sampling, the student, training, querying.

Every test compares a CUDA run with the CPU (or the dense oracle) on the same random input. Skipped on
machines without CUDA (CI has none); run them on a GPU machine with ``pytest tests/test_cuda.py``.
"""

import copy

import pytest
import torch

from geopurify.geometry import voxelize
from geopurify.lifting import LiftedFeatures
from geopurify.segment import Segmenter
from geopurify.segment.pooling import PoolingConfig, affinity_matrix, affinity_weights, knn_graph, propagate
from geopurify.sim import make_room, noisy_class_features
from geopurify.student import (
    DistillScene,
    TrainConfig,
    build_student,
    load_student,
    student_config,
    student_inputs,
    train_student,
)
from geopurify.student.distill import PairConfig, info_nce, pairs_for_anchors
from geopurify.student.sparse import build_kernel_map, sparse_conv
from geopurify.teachers import get_teacher, teacher_features
from test_sparse import dense_oracle, random_voxels

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def _exact_float32_matmuls():
    """Full float32 products on the GPU (no TF32), so CPU and CUDA agree to float32 rounding."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = old


@pytest.fixture(scope="module")
def room():
    room = make_room(seed=3, density=80)
    feats, _ = noisy_class_features(room, 16, seed=3)
    return room, feats


@pytest.mark.parametrize("kernel", [1, 3])
def test_sparse_conv_on_cuda_matches_the_dense_oracle_forward_and_backward(kernel):
    coords = random_voxels(300, 9, seed=1)
    km_cpu, km = build_kernel_map(coords, kernel), build_kernel_map(coords.to(CUDA), kernel)
    for a, b in zip(km_cpu.in_idx, km.in_idx):                 # the same neighbour pairs, offset by offset
        assert (a is None and b is None) or torch.equal(a, b.cpu())
    x = torch.randn(len(coords), 6, dtype=torch.float64)
    w = torch.randn(kernel ** 3, 6, 5, dtype=torch.float64)
    xg, wg = x.to(CUDA, copy=True).requires_grad_(), w.to(CUDA, copy=True).requires_grad_()
    out = sparse_conv(xg, km, wg)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    ref = dense_oracle(coords, xr, wr, 9)
    torch.testing.assert_close(out.cpu(), ref)
    g = torch.randn_like(ref)
    (out * g.to(CUDA)).sum().backward()
    (ref * g).sum().backward()
    torch.testing.assert_close(xg.grad.cpu(), xr.grad)
    torch.testing.assert_close(wg.grad.cpu(), wr.grad)


def test_knn_affinities_and_propagation_on_cuda_match_cpu():
    g = torch.Generator().manual_seed(0)
    centers = torch.rand(2000, 3, generator=g)
    emb = torch.nn.functional.normalize(torch.randn(2000, 8, generator=g), dim=1)
    x0 = torch.randn(2000, 5, generator=g)
    nb = knn_graph(centers, 16)
    nb_g = knn_graph(centers.to(CUDA), 16)
    assert torch.equal(nb_g.sort(1).values.cpu(), nb.sort(1).values)         # same neighbour sets
    w = affinity_weights(emb, nb, 20.0)
    w_g = affinity_weights(emb.to(CUDA), nb.to(CUDA), 20.0)
    torch.testing.assert_close(w_g.cpu(), w, rtol=1e-5, atol=1e-6)
    out = propagate(affinity_matrix(nb, w), x0, steps=5, alpha=0.2)
    out_g = propagate(affinity_matrix(nb.to(CUDA), w_g), x0.to(CUDA), steps=5, alpha=0.2)
    torch.testing.assert_close(out_g.cpu(), out, rtol=1e-4, atol=1e-5)


def test_pair_sampling_on_cuda_matches_cpu():
    g = torch.Generator().manual_seed(1)
    centers = torch.rand(3000, 3, generator=g) * 3
    teacher = torch.nn.functional.normalize(torch.randn(3000, 12, generator=g), dim=1)
    anchors = torch.randperm(3000, generator=g)[:256]
    cfg = PairConfig(anchors=256, budget_bytes=4 * 3000 * 40)                 # several chunks
    p = pairs_for_anchors(teacher, centers, anchors, cfg)
    q = pairs_for_anchors(teacher.to(CUDA), centers.to(CUDA), anchors.to(CUDA), cfg)
    assert torch.equal(q.positives.cpu(), p.positives)
    sim = teacher @ teacher.T
    # the same similarity values (ties may pick other indices)
    torch.testing.assert_close(sim[anchors[:, None], q.negatives.cpu()].sort(1).values,
                               sim[anchors[:, None], p.negatives].sort(1).values)
    assert torch.equal(q.valid.cpu(), p.valid)


@pytest.mark.parametrize(("norm", "levels"), [("batch", 0), ("layer", 0), ("batch", 2)])
def test_student_forward_and_loss_gradients_on_cuda_match_cpu(room, norm, levels):
    """In float64, so that only the order of summation differs (index_add_ runs atomically on CUDA)."""
    sc, feats = room
    grid = voxelize(sc.coords, 0.02)
    model = build_student(student_config("cpu", 16, hidden=32, embed_dim=16, norm=norm, stem_kernel=3,
                                         levels=levels), seed=0)
    model = model.double()
    model_g = copy.deepcopy(model).to(CUDA)
    x = student_inputs(grid, feats, sc.colors, sc.normals).double()
    pairs = pairs_for_anchors(grid.to_voxels(feats), grid.centers, torch.arange(0, grid.num_voxels, 7)[:200],
                              PairConfig(anchors=200, macro=8, micro=4))
    loss = info_nce(model(x, model.pyramid(grid.coords)), pairs)
    pairs_g = type(pairs)(*(t.to(CUDA) for t in (pairs.anchors, pairs.positives, pairs.negatives, pairs.valid)))
    loss_g = info_nce(model_g(x.to(CUDA), model_g.pyramid(grid.coords.to(CUDA))), pairs_g)
    torch.testing.assert_close(loss_g.cpu(), loss)
    loss.backward()
    loss_g.backward()
    for (name, p), q in zip(model.named_parameters(), model_g.parameters()):
        torch.testing.assert_close(q.grad.cpu(), p.grad, msg=name)


def test_training_on_cuda_reduces_the_loss_and_its_checkpoints_load_on_cpu(room, tmp_path):
    sc, feats = room
    item = DistillScene(sc, feats, teacher_features(sc, get_teacher("geometric")))
    cfg = TrainConfig(epochs=4, warmup_epochs=1, lr=1e-3, pairs=PairConfig(anchors=512), save_every=2)
    scfg = student_config("cpu", 16, hidden=16, embed_dim=16)
    result = train_student([item], tmp_path, scfg, cfg, device="cuda", progress=False)
    h = result.history
    assert [r["epoch"] for r in h] == [1, 3] and h[-1]["val_loss"] < h[0]["val_loss"]
    assert next(result.student.parameters()).device.type == "cuda"
    grid = voxelize(sc.coords, 0.02)
    on_cpu = load_student(tmp_path / "last.pt")
    e_cpu = on_cpu.embed(grid, feats, sc.colors, sc.normals)
    e_gpu = result.student.embed(grid, feats, sc.colors, sc.normals)
    assert e_gpu.device.type == "cpu"                                         # embeddings come back to the CPU
    torch.testing.assert_close(e_gpu, e_cpu, rtol=1e-4, atol=1e-5)
    again = train_student([item], tmp_path, scfg, cfg, device="cuda", progress=False)      # finished: resumes to nothing
    assert again.history == h


def test_segmenter_on_cuda_gives_the_cpu_labels(room):
    sc, feats = room
    lifted = LiftedFeatures(feats, torch.ones(sc.num_points, dtype=torch.bool),
                            torch.ones(sc.num_points, dtype=torch.int32), "sim")
    text = torch.nn.functional.normalize(torch.randn(6, 16, generator=torch.Generator().manual_seed(2)), dim=1)
    student = build_student(student_config("cpu", 16, hidden=8, embed_dim=8), seed=0)
    out = {}
    for dev in ("cpu", "cuda"):
        seg = Segmenter(pooling=PoolingConfig(k=16, steps=5), device=dev)
        seg.set_scene(sc, lifted, copy.deepcopy(student).to(dev))
        out[dev] = seg.query(text_embeddings=text)
    assert out["cuda"].labels.device.type == "cpu"
    agree = float((out["cuda"].labels == out["cpu"].labels).float().mean())
    assert agree > 0.999                                                      # float rounding may flip near-ties
    torch.testing.assert_close(out["cuda"].scores, out["cpu"].scores, rtol=1e-3, atol=1e-4)

