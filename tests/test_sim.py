"""The virtual camera rig, the renderer (known answers) and the simulated segmenter."""

import math

import numpy as np
import pytest
import torch

from geopurify import Scene
from geopurify.camera import look_at
from geopurify.labels import SCANNET20
from geopurify.render import fill_holes
from geopurify.sim import make_room
from geopurify.sim.mask_model import CONFUSABLE, MaskModelNoise, SimulatedMaskModel
from geopurify.sim.views import SCANNET_K_320, render_views, room_cameras

CLEAN = MaskModelNoise(consistent_confusion=0, view_confusion=0, mask_stride=1, boundary_px=0, blobs_per_view=0,
                       uncovered=0)


def square(center, size, normal_axis, spacing=0.01, label=0, inst=0):
    n = int(size / spacing)
    a, b = torch.meshgrid(torch.arange(n) * spacing - size / 2, torch.arange(n) * spacing - size / 2, indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    c = torch.zeros_like(a)
    pts = {0: torch.stack([c, a, b], 1), 1: torch.stack([a, c, b], 1), 2: torch.stack([a, b, c], 1)}[normal_axis]
    pts = pts + torch.tensor(center, dtype=torch.float32)
    nrm = torch.zeros_like(pts)
    nrm[:, normal_axis] = 1
    return pts, nrm, torch.full((len(pts),), label), torch.full((len(pts),), inst)


def scene_of(parts):
    pts, nrm, lab, ins = (torch.cat(x) for x in zip(*parts))
    return Scene(name="t", coords=pts.float(), colors=torch.full_like(pts, 0.5), normals=nrm.float(),
                 labels=lab.long(), label_set=SCANNET20, instances=ins.long())


def test_plane_renders_at_its_known_depth():
    scene = scene_of([square((0, 0, 0), 4.0, 2)])
    pose = look_at([0.0, 0.0, 2.0], [0.0, 0.0, 0.0], up=[0.0, 1.0, 0.0])
    view = render_views(scene, [pose])[0]
    depth = view.frame.depth
    assert float((depth > 0).float().mean()) > 0.99
    torch.testing.assert_close(depth[depth > 0].median(), torch.tensor(2.0), atol=0.01, rtol=0)
    assert bool((view.labels[depth > 0] == 0).all())


def test_a_near_box_occludes_a_far_one():
    near = square((2.0, 0, 1.0), 0.6, 0, label=SCANNET20.index("chair"), inst=1)
    far = square((4.0, 0, 1.0), 3.0, 0, label=SCANNET20.index("wall"), inst=2)
    scene = scene_of([near, far])
    pose = look_at([0.0, 0.0, 1.0], [1.0, 0.0, 1.0])
    view = render_views(scene, [pose])[0]
    h, w = view.labels.shape
    # the near square spans 0.6 m at 2 m: +-43 px around the centre with fx = 289
    centre = view.labels[h // 2 - 30:h // 2 + 30, w // 2 - 30:w // 2 + 30]
    assert bool((centre == SCANNET20.index("chair")).all())
    torch.testing.assert_close(view.frame.depth[h // 2, w // 2], torch.tensor(2.0), atol=0.02, rtol=0)
    ring = view.labels[h // 2, w // 2 + 60:w // 2 + 100]
    assert bool((ring == SCANNET20.index("wall")).all())
    torch.testing.assert_close(view.frame.depth[h // 2, w // 2 + 80], torch.tensor(4.0), atol=0.02, rtol=0)


def test_fill_holes_uses_the_nearest_neighbour():
    depth = torch.full((5, 5), 3.0)
    depth[2, 2] = 0
    depth[1, 2] = 1.0
    vals = torch.zeros(5, 5, 1)
    vals[1, 2] = 7
    d, v = fill_holes(depth, vals)
    assert float(d[2, 2]) == 1.0 and float(v[2, 2, 0]) == 7


@pytest.fixture(scope="module")
def room():
    return make_room(seed=5, density=150)


def test_cameras_stand_inside_the_room_at_the_stated_height_and_pitch(room):
    poses = room_cameras(room, 12, seed=0)
    floor = float(np.percentile(room.coords[:, 2].numpy(), 1))
    for pose in poses:
        eye, fwd = pose[:3, 3], pose[:3, 2]                 # OpenCV: camera z looks forward
        assert 1.2 - 1e-6 <= eye[2] - floor <= 1.7 + 1e-6
        pitch = math.degrees(math.asin(fwd[2]))
        assert -35 - 1e-6 <= pitch <= -15 + 1e-6
        d = (room.coords - torch.from_numpy(eye).float()).norm(dim=1).min()
        assert float(d) >= 0.3
    views = render_views(room, poses[:3])
    assert views[0].frame.image.shape == (240, 320, 3) and np.allclose(views[0].frame.intrinsics, SCANNET_K_320)
    assert float((views[0].frame.depth > 0).float().mean()) > 0.8


def test_segmenter_error_modes(room):
    view = render_views(room, room_cameras(room, 2, seed=1))[0]
    gt = view.labels
    clean = SimulatedMaskModel(SCANNET20, CLEAN, seed=0).predict_labels(view)
    assert torch.equal(clean, gt)
    owner, names = SimulatedMaskModel(SCANNET20, CLEAN, seed=0).segment(view)
    assert len(names) == len(torch.unique(gt[gt >= 0]))
    for i, n in enumerate(names):
        assert bool((gt[owner == i] == SCANNET20.index(n)).all())
    always = MaskModelNoise(**{**CLEAN.to_dict(), "consistent_confusion": 1.0})
    seg = SimulatedMaskModel(SCANNET20, always, seed=0)
    p1, p2 = seg.predict_labels(view), seg.predict_labels(view)
    assert torch.equal(p1, p2)                                # consistent across views
    changed = (p1 != gt) & (gt >= 0)
    assert float(changed[gt >= 0].float().mean()) > 0.5
    for c in torch.unique(gt[changed]).tolist():
        got = {SCANNET20.class_names[x] for x in torch.unique(p1[changed & (gt == c)]).tolist()}
        assert got <= set(CONFUSABLE[SCANNET20.class_names[c]])
    none = SimulatedMaskModel(SCANNET20, MaskModelNoise(**{**CLEAN.to_dict(), "uncovered": 1.0})).predict_labels(view)
    assert bool((none == -1).all())
    coarse = SimulatedMaskModel(SCANNET20, MaskModelNoise(**{**CLEAN.to_dict(), "mask_stride": 4})).predict_labels(view)
    wrong = (coarse != gt) & (gt >= 0)
    assert 0 < float(wrong.float().mean()) < 0.1              # only near edges


def test_the_camera_rig_builds_one_kd_tree(monkeypatch):
    import geopurify.sim.views as views

    built = []
    real = views.cKDTree

    def counting(*args, **kwargs):
        built.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(views, "cKDTree", counting)
    room = make_room(seed=2, density=80)
    poses = room_cameras(room, 12, seed=1, clearance=0.5)
    assert len(poses) == 12 and len(built) == 1
    dist, _ = real(room.coords.numpy()).query(np.array([p[:3, 3] for p in poses]))
    assert (dist >= 0.5).mean() > 0.9                      # the clearance rule still holds
