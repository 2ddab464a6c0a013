"""Pooling against dense oracles; the logits fast path; the Segmenter; metrics."""

import numpy as np
import pytest
import torch

from geopurify import InputError
from geopurify.evaluation import ConfusionMatrix, affinity_purity, voxel_mode
from geopurify.evaluation.evaluate import evaluate, predictions_to_ids
from geopurify.labels import SCANNET20
from geopurify.lifting import LiftedFeatures
from geopurify.segment import Segmenter
from geopurify.segment.pooling import PoolingConfig, affinity_matrix, affinity_weights, knn_graph, propagate
from geopurify.sim import class_prototypes, make_room, noisy_class_features
from geopurify.student.network import build_student, student_config


def test_knn_graph_matches_brute_force():
    pts = torch.rand(300, 3)
    nb = knn_graph(pts, 10)
    d = torch.cdist(pts, pts)
    d.fill_diagonal_(float("inf"))
    ref = d.topk(10, largest=False).values
    torch.testing.assert_close(d.gather(1, nb).sort(1).values, ref)
    assert not bool((nb == torch.arange(300)[:, None]).any())
    assert knn_graph(pts[:5], 96).shape == (5, 4)


def test_affinity_rows_are_softmax_of_sharpened_cosines():
    e = torch.randn(50, 6)
    nb = knn_graph(torch.rand(50, 3), 8)
    w = affinity_weights(e, nb, 20.0)
    en = torch.nn.functional.normalize(e, dim=1)
    for i in range(50):
        cos = torch.stack([en[i] @ en[j] for j in nb[i]])
        torch.testing.assert_close(w[i], torch.softmax(20 * cos, 0))
    a = affinity_matrix(nb, w).to_dense()
    torch.testing.assert_close(a.sum(1), torch.ones(50))
    assert float(a.diagonal().abs().sum()) == 0


@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_propagate_matches_dense_matrix_powers(alpha):
    m, k = 80, 6
    nb = knn_graph(torch.rand(m, 3), k)
    w = torch.softmax(torch.randn(m, k), 1)
    a = affinity_matrix(nb, w)
    x0 = torch.randn(m, 5, dtype=torch.float32)
    dense = a.to_dense().double()
    ref = x0.double()
    for _ in range(7):
        ref = (1 - alpha) * dense @ ref + alpha * x0.double()
    torch.testing.assert_close(propagate(a, x0, 7, alpha, chunk_columns=2), ref.float(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(propagate(a, x0, 0), x0)


@pytest.fixture(scope="module")
def room_setup():
    room = make_room(seed=4, density=80)
    feats, _ = noisy_class_features(room, 24, seed=4, point_flip=0.3)
    lifted = LiftedFeatures(feats, torch.ones(room.num_points, dtype=torch.bool),
                            torch.ones(room.num_points, dtype=torch.int32), "sim")
    text = class_prototypes(SCANNET20.num_classes + 1, 24)[SCANNET20.scored.nonzero().flatten()]
    return room, lifted, text


def test_logit_fast_path_gives_the_same_labels_as_pooled_features(room_setup):
    room, lifted, text = room_setup
    seg = Segmenter(pooling=PoolingConfig(k=16, steps=5))
    student = build_student(student_config("cpu", 24, hidden=8, embed_dim=8), seed=0)
    seg.set_scene(room, lifted, student)
    fast = seg.query(text_embeddings=text, fast=True)
    slow = seg.query(text_embeddings=text, fast=False)
    assert torch.equal(fast.labels, slow.labels)
    # the fast path gives the pooled dot products (cosines times the pooled feature norm), never as scores
    assert fast.scores is None and slow.logits is None
    norms = seg.pooled_features().norm(dim=1, keepdim=True)
    torch.testing.assert_close(fast.logits, slow.scores * norms, rtol=1e-4, atol=1e-5)


def test_segmenter_direct_purified_other_and_heatmap(room_setup):
    room, lifted, text = room_setup
    seg = Segmenter(pooling=PoolingConfig(k=16, steps=3))
    with pytest.raises(RuntimeError, match="set_scene"):
        seg.query(text_embeddings=text)
    seg.set_scene(room, lifted)                      # no student: uniform spatial weights
    direct = seg.query(text_embeddings=text, purify=False)
    ref = (torch.nn.functional.normalize(lifted.features, dim=1) @ text.T).argmax(1)
    assert torch.equal(direct.labels, ref)
    purified = seg.query(text_embeddings=text)
    classes = SCANNET20.scored.nonzero().flatten().tolist()
    gt = room.labels
    acc = lambda r: float((predictions_to_ids(r.labels, classes) == gt)[gt >= 0].float().mean())  # noqa: E731
    assert acc(purified) > acc(direct) + 0.1         # smoothing repairs the random point flips
    other = seg.query(text_embeddings=text, other_threshold=2.0)
    assert bool((other.labels == -1).all())
    heat = seg.heatmap(text_embedding=text[4])
    assert heat.shape == (room.num_points,) and float(heat.min()) == 0.0 and float(heat.max()) == 1.0
    chair = SCANNET20.index("chair")
    assert float(heat[gt == chair].mean()) > float(heat[gt != chair].mean()) + 0.2
    with pytest.raises(InputError, match="24-d"):
        seg.query(text_embeddings=torch.randn(3, 5))
    with pytest.raises(InputError, match="no text encoder"):
        seg.query(["chair"])
    with pytest.raises(InputError, match="do not fit"):
        seg.set_scene(room, lifted.features[:10])


def naive_scores(pred, target, classes, num_classes):
    inter = [0] * num_classes
    union = [0] * num_classes
    tgt = [0] * num_classes
    for p, t in zip(pred.tolist(), target.tolist()):
        if t < 0 or t >= num_classes:
            continue
        tgt[t] += 1
        if p == t:
            inter[t] += 1
            union[t] += 1
        else:
            union[t] += 1
            if 0 <= p < num_classes:
                union[p] += 1
    ious = [inter[c] / union[c] if union[c] else 0.0 for c in classes]
    accs = [inter[c] / tgt[c] if tgt[c] else 0.0 for c in classes]
    return sum(ious) / len(classes), sum(accs) / len(classes), ious


def test_confusion_matrix_matches_naive_counts_over_scenes():
    rng = np.random.default_rng(0)
    cm = ConfusionMatrix(6)
    preds, targets = [], []
    for _ in range(3):
        t = torch.from_numpy(rng.integers(-1, 6, 500))
        p = torch.from_numpy(rng.integers(-1, 7, 500))    # includes -1 ("other") and 6 (outside)
        t[t == 5] = -1                                     # class 5 absent from the ground truth
        cm.update(p, t)
        preds.append(p)
        targets.append(t)
    classes = [0, 1, 2, 3, 5]
    miou, macc, ious = naive_scores(torch.cat(preds), torch.cat(targets), classes, 6)
    s = cm.summary(classes=classes)
    assert s.miou == pytest.approx(miou) and s.macc == pytest.approx(macc)
    assert s.per_class["5"]["iou"] == 0.0                  # absent class counts 0, as upstream
    assert cm.summary(classes=classes, present_only=True).miou == pytest.approx(sum(ious[:4]) / 4)
    s20 = ConfusionMatrix(20).update(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1])).summary(SCANNET20)
    assert len(s20.per_class) == 19 and "otherfurniture" not in s20.per_class
    # foreground excludes wall and floor: only 'cabinet' (2) and the rest remain
    assert s20.fg_miou == pytest.approx(0.0) and s20.miou == pytest.approx((1 + 0.5) / 19)


def test_voxel_mode_and_affinity_purity_known_answers():
    inverse = torch.tensor([0, 0, 0, 1, 1, 2])
    assert voxel_mode(torch.tensor([3, 3, 1, -1, 2, -1]), inverse, 3).tolist() == [3, 2, -1]
    # two instances side by side on a line: uniform weights leak across the boundary, an oracle does not
    centers = torch.stack([torch.arange(20.0), torch.zeros(20), torch.zeros(20)], 1)
    inst = (torch.arange(20) >= 10).long()
    uniform = affinity_purity(None, centers, inst, k=4)
    oracle = affinity_purity(torch.nn.functional.one_hot(inst).float(), centers, inst, k=4, sharpen=50)
    assert oracle > 0.99 > uniform
    assert uniform == pytest.approx(1 - 2 * (1 / 4 + 2 / 4) / 20)


def test_evaluate_direct_vs_purified_on_all_and_seen(room_setup):
    room, lifted, text = room_setup
    seen = torch.rand(room.num_points) > 0.3
    lifted2 = LiftedFeatures(lifted.features, seen, lifted.view_counts, "sim")
    ev = evaluate([(room, lifted2)], SCANNET20, segmenter=Segmenter(pooling=PoolingConfig(k=16, steps=3)),
                  text_embeddings=text)
    assert ev.scores("purified").miou > ev.scores("direct").miou
    assert ev.matrices["direct"]["seen"].counts.sum() < ev.matrices["direct"]["all"].counts.sum()
    table = ev.table()
    assert "| purified | all |" in table and "| chair |" in table
    assert set(ev.to_dict()["results"]) == {"direct", "purified"}
