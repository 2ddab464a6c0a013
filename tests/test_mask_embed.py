"""mask-embed: mask proposals embedded over OpenMask3D's multi-scale crops by tiny CLIP / SigLIP towers."""

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from geopurify import InputError  # noqa: E402
from geopurify.encoders import encode_vocabulary, get_encoder  # noqa: E402
from geopurify.encoders.maps import MaskFeatures, assign_masks  # noqa: E402
from geopurify.encoders.mask_embed import FileProposals, MaskEmbedEncoder, mask_boxes  # noqa: E402
from geopurify.io import Frame  # noqa: E402
from tiny_models import make_clip, make_siglip  # noqa: E402

K_CAM = np.array([[50.0, 0, 39.5], [0, 50.0, 29.5], [0, 0, 1]])


@pytest.fixture(scope="module")
def towers(tmp_path_factory):
    return {"clip-hf": make_clip(tmp_path_factory.mktemp("clip")), "siglip": make_siglip(tmp_path_factory.mktemp("siglip"))}


@pytest.fixture
def frame_and_masks(tmp_path):
    """A 60 x 80 frame and three masks at half resolution: a box, an L shape, and one below the threshold."""
    img = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    m = np.zeros((3, 30, 40), np.float32)
    m[0, 2:10, 3:20] = 0.9
    m[1, 15:28, 25:30] = 0.8
    m[1, 24:28, 10:30] = 0.8
    m[2, 0:5, 30:40] = 0.3
    np.savez(tmp_path / "f.npz", masks=m, scores=np.array([1.0, 0.5, 1.0], np.float32))
    return Frame("f", img, K_CAM, np.eye(4)), m, tmp_path


def test_boxes_follow_openmask3ds_multi_level_rule():
    masks = torch.zeros(2, 50, 60, dtype=torch.bool)
    masks[0, 10:20, 20:40] = True                 # 10 rows x 20 columns
    torch.testing.assert_close(mask_boxes(masks, 0, 0.1)[0], torch.tensor([10, 20, 20, 40]))
    # level 2: int(10 * 0.1) * 2 = 2 rows and int(20 * 0.1) * 2 = 4 columns on each side
    torch.testing.assert_close(mask_boxes(masks, 2, 0.1)[0], torch.tensor([8, 16, 22, 44]))
    assert mask_boxes(masks, 1, 0.1)[1].tolist() == [0, 0, 50, 60]      # an empty mask: the whole image
    masks[0, 0:3, 55:60] = True                   # now rows 0..19, columns 20..59: grown by 20 and 40, clipped
    assert mask_boxes(masks, 2, 0.5)[0].tolist() == [0, 0, 40, 60]


@pytest.mark.parametrize("tower", ["clip-hf", "siglip"])
@pytest.mark.parametrize("background", ["keep", "mask"])
def test_mask_embeddings_match_a_manual_openmask3d_computation(towers, frame_and_masks, tower, background):
    frame, m, folder = frame_and_masks
    enc = get_encoder("mask-embed", source=towers[tower], tower=tower, masks=folder, background=background)
    out = enc.encode_frame(frame)
    assert isinstance(out, MaskFeatures) and out.dim == enc.dim == enc.text_encoder.dim
    torch.testing.assert_close(out.owner, assign_masks(torch.from_numpy(m), torch.tensor([1.0, 0.5, 1.0])))
    t = enc.tower
    s = t.image_size
    with torch.no_grad():
        for k in (0, 1):
            full = np.repeat(np.repeat(m[k] >= 0.5, 2, 0), 2, 1)        # the mask at image resolution
            rows, cols = np.nonzero(full)
            y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
            embs = []
            for level in range(3):
                dy, dx = int((y1 - y0) * 0.1) * level, int((x1 - x0) * 0.1) * level
                ya, yb, xa, xb = max(0, y0 - dy), min(60, y1 + dy), max(0, x0 - dx), min(80, x1 + dx)
                crop = frame.image[ya:yb, xa:xb].clone()
                if background == "mask":
                    crop[~torch.from_numpy(full[ya:yb, xa:xb])] = torch.tensor([round(v * 255) for v in t.mean],
                                                                             dtype=torch.uint8)
                x = crop.permute(2, 0, 1)[None].float() / 255
                x = torch.nn.functional.interpolate(x, size=(s, s), mode="bicubic", align_corners=False, antialias=True)
                x = (x.clamp(0, 1) - torch.tensor(t.mean).view(1, 3, 1, 1)) / torch.tensor(t.std).view(1, 3, 1, 1)
                e = t.model.get_image_features(pixel_values=x).pooler_output
                embs.append(torch.nn.functional.normalize(e, dim=1))
            ref = torch.nn.functional.normalize(torch.cat(embs).mean(0), dim=0)
            torch.testing.assert_close(out.embeddings[k], ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(out.embeddings[2], torch.zeros(enc.dim))          # owns no pixel: not embedded
    # free-text queries score the masks in the tower's own text space
    logits, valid = out.gather_logits(torch.tensor([[10, 20], [50, 50], [1, 79]]), (80, 60),
                                      encode_vocabulary(enc.text_encoder, ["chair", "table"]), enc.logit_scale)
    assert valid.tolist() == [True, True, False] and logits.shape == (3, 2)


def test_mask_embed_options_are_checked(towers, frame_and_masks, tmp_path):
    _, _, folder = frame_and_masks
    with pytest.raises(InputError, match="exactly one"):
        get_encoder("mask-embed", source=towers["clip-hf"])
    with pytest.raises(InputError, match="unknown background 'blur'"):
        get_encoder("mask-embed", source=towers["clip-hf"], masks=folder, background="blur")
    with pytest.raises(InputError, match="mask folder not found"):
        get_encoder("mask-embed", source=towers["clip-hf"], masks=tmp_path / "none")
    with pytest.raises(InputError, match="the precomputed encoder has no image tower"):
        MaskEmbedEncoder(get_encoder("precomputed", source=folder), FileProposals(folder))
    enc = get_encoder("mask-embed", source=towers["clip-hf"], masks=folder)
    with pytest.raises(InputError, match="no mask file for frame 'g'"):
        enc.encode_frame(Frame("g", torch.zeros(60, 80, 3, dtype=torch.uint8), K_CAM, np.eye(4)))


def test_sam_family_without_torchvision_says_what_to_install(towers, monkeypatch):
    import sys

    from geopurify.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "torchvision", None)      # import torchvision raises ImportError
    with pytest.raises(MissingDependencyError, match=r"torch==2\.14\.1 with torchvision==0\.29\.1.*geopurify\[sam3\]"):
        get_encoder("mask-embed", source=towers["clip-hf"], sam=towers["clip-hf"])
    with pytest.raises(MissingDependencyError, match=r"sam3 encoder .*pip install torch==2\.14\.1 torchvision==0\.29\.1"
                       r".*geopurify\[sam3\]"):
        get_encoder("sam3", source=towers["clip-hf"])
