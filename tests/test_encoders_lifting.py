"""Each 2D encoder (tiny random models) lifts a real 7-Scenes frame end to end: with mean fusion over one view,
a visible point's lifted vector is the encoder's output at its pixel; consensus fusion runs with its own scores."""

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from geopurify import Frames, load_scan  # noqa: E402
from geopurify.encoders import get_encoder  # noqa: E402
from geopurify.lifting import LiftConfig, lift_scan, visible_points  # noqa: E402
from tiny_models import make_clip, make_siglip  # noqa: E402

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def kitchen_one_view(shared_data):
    scan = load_scan(shared_data / "sevenscenes_redkitchen")
    return scan.scene, Frames([scan.frames._items[3]])


@pytest.fixture(scope="module")
def encoders(tmp_path_factory, kitchen_one_view):
    clip, siglip = make_clip(tmp_path_factory.mktemp("clip")), make_siglip(tmp_path_factory.mktemp("siglip"))
    frame = kitchen_one_view[1][0]
    masks = tmp_path_factory.mktemp("masks")
    m = np.zeros((3, 48, 64), np.float32)       # three boxes at a tenth of the 640 x 480 resolution
    m[0, 5:30, 4:30], m[1, 20:45, 30:60], m[2, 0:10, 40:64] = 0.9, 0.8, 0.7
    np.savez(masks / f"{frame.name}.npz", masks=m)
    encs = {"clip-hf": get_encoder("clip-hf", source=clip),
            "clip-hf clearclip": get_encoder("clip-hf", source=clip, attention="clearclip"),
            "siglip": get_encoder("siglip", source=siglip),
            "mask-embed": get_encoder("mask-embed", source=siglip, tower="siglip", masks=masks)}
    try:
        import torchvision  # noqa: F401

        from tiny_models import make_sam3
        encs["sam3"] = get_encoder("sam3", source=make_sam3(tmp_path_factory.mktemp("sam3")))
    except ImportError:
        pass                                    # sam3 needs torchvision (CI's second venv)
    return encs


@pytest.mark.parametrize("name", ["clip-hf", "clip-hf clearclip", "siglip", "mask-embed",
                                  pytest.param("sam3", marks=pytest.mark.sam3)])
def test_mean_fusion_over_one_view_is_the_encoders_output_at_the_pixel(kitchen_one_view, encoders, name):
    if name not in encoders:
        pytest.skip("sam3 needs torchvision: pip install torch==2.14.1 torchvision==0.29.1")
    scene, frames = kitchen_one_view
    enc = encoders[name]
    vocab = ["chair", "table", "wall"]
    cfg = LiftConfig(fusion="mean", fill_unseen=False)
    lf = lift_scan(scene, frames, enc, vocabulary=vocab, config=cfg, progress=False)
    frame = frames[0]
    vis = visible_points(scene.coords.T.contiguous().T, frame, depth_tolerance=cfg.depth_tolerance, border=cfg.border)
    want, valid = enc.encode_frame(frame).gather(vis.pixels, (frame.image.shape[1], frame.image.shape[0]))
    idx = vis.index[valid]
    assert len(idx) > 1000 and torch.equal(lf.seen.nonzero().flatten().sort().values, idx.sort().values)
    torch.testing.assert_close(lf.features[idx], want[valid])
    consensus = lift_scan(scene, frames, enc, vocabulary=vocab, config=LiftConfig(fusion="consensus",
                                                                                  fill_unseen=False), progress=False)
    assert consensus.features.shape == (scene.num_points, enc.dim) and torch.equal(consensus.seen, lf.seen)


@pytest.mark.parametrize("name", ["siglip", "mask-embed", pytest.param("sam3", marks=pytest.mark.sam3)])
def test_the_segmenter_queries_with_the_encoders_own_text_tower(kitchen_one_view, encoders, name):
    from geopurify import InputError, Segmenter

    if name not in encoders:
        pytest.skip("sam3 needs torchvision: pip install torch==2.14.1 torchvision==0.29.1")
    scene, frames = kitchen_one_view
    enc = encoders[name]
    lf = lift_scan(scene, frames, enc, vocabulary=["chair", "table", "wall"], progress=False)
    seg = Segmenter(encoder=enc, vocabulary_check="off")
    seg.set_scene(scene, lf)
    res = seg.query(["wall", "chair"], purify=False)
    assert res.labels.shape == (scene.num_points,) and set(res.labels.unique().tolist()) <= {0, 1}
    if name == "sam3":      # class-score space: the query's scores are the lifted channels of those classes
        torch.testing.assert_close(res.scores, torch.nn.functional.normalize(lf.features, dim=1)[:, [2, 0]])
        with pytest.raises(InputError, match="'sofa' not in the sam3 lift vocabulary"):
            seg.query(["sofa"])
