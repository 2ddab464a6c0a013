"""Pair sampling invariants, InfoNCE against a hand computation, augmentation."""

import math

import pytest
import torch

from geopurify.student.distill import (
    PairConfig,
    PairTable,
    augment,
    info_nce,
    pairs_for_anchors,
    random_rotation,
    sample_pairs,
)


@pytest.fixture(scope="module")
def cloud():
    g = torch.Generator().manual_seed(0)
    centers = torch.rand(600, 3, generator=g) * 2
    teacher = torch.nn.functional.normalize(torch.randn(600, 8, generator=g), dim=1)
    return teacher, centers


def brute_force(teacher, centers, a, cfg):
    """Naive per-anchor loops over python lists."""
    t = teacher.tolist()
    sims = [sum(x * y for x, y in zip(t[a], t[j])) for j in range(len(t))]
    others = [j for j in range(len(t)) if j != a]
    pos = max(others, key=lambda j: sims[j])
    rest = sorted((j for j in others if j != pos), key=lambda j: sims[j])
    d = [float((centers[j] - centers[a]).norm()) for j in range(len(t))]
    near = sorted(others, key=lambda j: d[j])[:cfg.micro_knn]
    micro = sorted((j for j in near if j != pos), key=lambda j: sims[j])[:cfg.micro]
    return pos, rest[:cfg.macro], micro, sims


def test_pairs_match_brute_force(cloud):
    teacher, centers = cloud
    cfg = PairConfig(anchors=20, macro=6, micro=4, micro_knn=12, budget_bytes=4 * 600 * 2 * 7)  # chunks of 7
    anchors = torch.arange(0, 600, 30)
    p = pairs_for_anchors(teacher, centers, anchors, cfg)
    assert p.negatives.shape == (20, 10) and bool(p.valid.all())
    for r, a in enumerate(anchors.tolist()):
        pos, macro, micro, sims = brute_force(teacher, centers, a, cfg)
        assert int(p.positives[r]) == pos
        assert a not in p.negatives[r].tolist()
        # argmins: same similarity values as the brute-force choice (ties may pick other indices)
        got = sorted(sims[j] for j in p.negatives[r, :6].tolist())
        assert got == pytest.approx([sims[j] for j in macro], abs=1e-6)
        got = sorted(sims[j] for j in p.negatives[r, 6:].tolist())
        assert got == pytest.approx([sims[j] for j in micro], abs=1e-6)


def test_micro_negatives_lie_in_the_spatial_neighbourhood(cloud):
    teacher, centers = cloud
    cfg = PairConfig(anchors=50, macro=5, micro=5, micro_knn=20)
    p = sample_pairs(teacher, centers, cfg, torch.Generator().manual_seed(1))
    assert len(set(p.anchors.tolist())) == 50
    d = torch.cdist(centers[p.anchors], centers)
    radius = d.sort(1).values[:, 20]                   # 20th neighbour (column 0 is the anchor)
    dm = d.gather(1, p.negatives[:, 5:])
    assert bool((dm <= radius[:, None] + 1e-6).all())


def test_micro_similarity_threshold_masks_slots(cloud):
    teacher, centers = cloud
    cfg = PairConfig(anchors=50, macro=5, micro=10, micro_knn=20, micro_max_similarity=0.0)
    p = sample_pairs(teacher, centers, cfg, torch.Generator().manual_seed(1))
    sims = (teacher[p.anchors, None] * teacher[p.negatives]).sum(-1)
    assert bool((sims[:, 5:][p.valid[:, 5:]] <= 0).all())
    assert not bool(p.valid[:, 5:].all()) and bool(p.valid[:, :5].all())


def test_pair_table_memoises_the_same_rows(cloud):
    teacher, centers = cloud
    cfg = PairConfig(anchors=100, macro=5, micro=5, micro_knn=20)
    table = PairTable(teacher, centers, cfg)
    p = table.sample(torch.Generator().manual_seed(4))
    ref = pairs_for_anchors(teacher, centers, p.anchors, cfg)
    assert torch.equal(p.positives, ref.positives) and torch.equal(p.negatives, ref.negatives)
    q = table.sample(torch.Generator().manual_seed(5))
    ref = pairs_for_anchors(teacher, centers, q.anchors, cfg)
    assert torch.equal(q.positives, ref.positives) and torch.equal(q.negatives, ref.negatives)


def test_info_nce_against_hand_computation():
    e = torch.nn.functional.normalize(torch.randn(6, 4, dtype=torch.float64), dim=1)
    from geopurify.student.distill import Pairs
    pairs = Pairs(torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([[4, 5], [4, 0]]),
                  torch.tensor([[True, True], [True, False]]))
    tau = 0.1
    losses = []
    for a, p, negs in ((0, 2, [4, 5]), (1, 3, [4])):
        num = math.exp(float(e[a] @ e[p]) / tau)
        den = num + sum(math.exp(float(e[a] @ e[n]) / tau) for n in negs)
        losses.append(-math.log(num / den))
    assert float(info_nce(e, pairs, tau)) == pytest.approx(sum(losses) / 2)


def test_augmentation_is_a_rotation_with_bounded_tilt_and_scale():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        r, s = random_rotation(g)
        torch.testing.assert_close(r @ r.T, torch.eye(3, dtype=torch.float64))
        assert float(torch.linalg.det(r)) == pytest.approx(1.0)
        assert 0.9 <= s <= 1.1
        assert math.degrees(math.acos(min(1.0, float(r[2, 2])))) <= 2 * 180 / 64 + 1e-6   # z stays near up
    pts = torch.randn(50, 3)
    n = torch.nn.functional.normalize(torch.randn(50, 3), dim=1)
    p2, n2 = augment(pts, n, torch.Generator().manual_seed(1))
    torch.testing.assert_close(n2.norm(dim=1), torch.ones(50))
    ratio = torch.pdist(p2) / torch.pdist(pts)
    assert float(ratio.std()) < 1e-4                    # a similarity transform
