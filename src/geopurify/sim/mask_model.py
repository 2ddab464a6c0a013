"""A simulated 2D open-vocabulary segmenter whose errors look like a real one's.

From a rendered view's ground-truth label and instance images it predicts per-frame masks with class
names. Error modes, each with a parameter of :class:`MaskModelNoise`:

1. ``consistent_confusion``: each object instance, with this probability, is called one of its class's
   confusable classes (:data:`CONFUSABLE`) in every view (the model's systematic mistake); background
   (wall, floor, ceiling) is exempt: 2D models do not mistake a whole floor or wall for something else;
2. ``view_confusion``: in each view, each visible instance, with this probability, takes a confusable
   class in that view only;
3. boundary error: masks are predicted on a grid ``mask_stride`` times coarser (at a random phase) and
   upsampled with nearest neighbours, as stride-4 mask heads are, and each mask's edge then moves by
   up to ``boundary_px`` pixels (grown or shrunk at random);
4. ``blobs_per_view``: expected number of random blobs of a wrong class, radius ``blob_radius`` pixels;
5. ``uncovered``: in each view, each instance, with this probability, gets no mask (pixels unobserved).

Pixels with no ground truth (empty, or an ignored class) get no mask. One mask per predicted class per
view, named by the class. The protocol "scannet-sim v1" is :data:`SCANNET_SIM_V1`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..labels import LabelSet
from .views import RenderedView

#: classes a 2D model plausibly mistakes each ScanNet20 class for
CONFUSABLE: dict[str, tuple[str, ...]] = {
    "wall": ("door", "picture", "curtain"), "floor": ("wall",), "cabinet": ("counter", "bookshelf", "desk"),
    "bed": ("sofa",), "chair": ("sofa", "table"), "sofa": ("chair", "bed"), "table": ("desk", "counter"),
    "door": ("wall", "cabinet"), "window": ("curtain", "picture"), "bookshelf": ("cabinet",),
    "picture": ("window", "wall"), "counter": ("cabinet", "table", "desk"), "desk": ("table",),
    "curtain": ("window", "shower curtain"), "refrigerator": ("cabinet", "door"),
    "shower curtain": ("curtain",), "toilet": ("sink", "bathtub"), "sink": ("toilet", "counter"),
    "bathtub": ("toilet", "sink"), "otherfurniture": ("cabinet", "table", "chair"),
}


@dataclass(frozen=True)
class MaskModelNoise:
    """Error parameters; the defaults are protocol "scannet-sim v1" (fixed once, so that direct projection
    lands near GeoPurify's own no-purification baseline; ``benchmarks/README.md`` has the figures)."""

    consistent_confusion: float = 0.05
    view_confusion: float = 0.05
    mask_stride: int = 4
    boundary_px: int = 1
    blobs_per_view: float = 0.3
    blob_radius: tuple[int, int] = (10, 35)
    uncovered: float = 0.05

    def __post_init__(self) -> None:
        for name in ("consistent_confusion", "view_confusion", "uncovered"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a probability")
        if self.mask_stride < 1 or self.boundary_px < 0 or self.blobs_per_view < 0:
            raise ValueError("mask_stride >= 1, boundary_px >= 0, blobs_per_view >= 0 required")

    def to_dict(self) -> dict:
        return asdict(self)


#: the fixed protocol of the purification benchmark (do not tune it towards a method)
SCANNET_SIM_V1 = MaskModelNoise()


class SimulatedMaskModel:
    """Seeded simulated segmenter for one scene (the consistent confusions are drawn per instance once).

    ``segment(view) -> (owner (H, W) int64, class_names)``: disjoint masks as an owner map (-1 = none).
    """

    def __init__(self, label_set: LabelSet, noise: MaskModelNoise = SCANNET_SIM_V1, seed: int = 0) -> None:
        self.label_set = label_set
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self._instance_class: dict[int, int] = {}
        names = label_set.class_names
        self._confusable = [[names.index(c) for c in CONFUSABLE.get(n, ()) if c in names] for n in names]

    def _confuse(self, c: int) -> int:
        options = self._confusable[c]
        return int(self.rng.choice(options)) if options else c

    def _scene_class(self, inst: int, true: int) -> int:
        if inst not in self._instance_class:
            background = self.label_set.class_names[true] in self.label_set.background
            confused = not background and self.rng.random() < self.noise.consistent_confusion
            self._instance_class[inst] = self._confuse(true) if confused else true
        return self._instance_class[inst]

    def predict_labels(self, view: RenderedView) -> torch.Tensor:
        """``(H, W) int64`` predicted class per pixel (-1 = no mask), before splitting into masks."""
        nz = self.noise
        gt, inst = view.labels.numpy(), view.instances.numpy()
        h, w = gt.shape
        pred = np.full((h, w), -1, dtype=np.int64)
        valid = gt >= 0
        # a pseudo-instance for labelled pixels without an instance id: one per class
        key = np.where(inst >= 0, inst, -2 - gt)
        for k in np.unique(key[valid]):
            m = valid & (key == k)
            true = int(np.bincount(gt[m]).argmax())
            c = self._scene_class(int(k), true)
            if self.rng.random() < nz.view_confusion:
                c = self._confuse(c)
            if self.rng.random() < nz.uncovered:
                continue
            pred[m] = c
        if nz.mask_stride > 1:                                   # coarse mask head, nearest upsampling
            s = nz.mask_stride
            oy, ox = self.rng.integers(0, s, 2)
            ys = np.clip((np.arange(h) - oy) // s * s + oy + s // 2, 0, h - 1)
            xs = np.clip((np.arange(w) - ox) // s * s + ox + s // 2, 0, w - 1)
            pred = pred[ys][:, xs]
        if nz.boundary_px > 0:
            pred = self._move_edges(pred)
        n_blobs = self.rng.poisson(nz.blobs_per_view)
        yy, xx = np.mgrid[0:h, 0:w]
        for _ in range(n_blobs):
            cy, cx = self.rng.integers(0, h), self.rng.integers(0, w)
            r = self.rng.integers(nz.blob_radius[0], nz.blob_radius[1] + 1)
            disk = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & (pred >= 0)
            if disk.any():
                under = int(np.bincount(pred[disk]).argmax())
                wrong = [c for c in range(self.label_set.num_classes) if c != under]
                pred[disk] = int(self.rng.choice(wrong))
        pred[~valid] = -1
        return torch.from_numpy(pred)

    def _move_edges(self, pred: np.ndarray) -> np.ndarray:
        """Grow or shrink each class region by up to ``boundary_px`` pixels."""
        out = pred.copy()
        h, w = pred.shape
        for c in np.unique(pred[pred >= 0]):
            px = int(self.rng.integers(1, self.noise.boundary_px + 1))
            grow = self.rng.random() < 0.5
            m = pred == c
            t = torch.from_numpy(m.astype(np.float32))[None, None]
            k = 2 * px + 1
            if grow:
                band = torch.nn.functional.max_pool2d(t, k, 1, px)[0, 0].numpy() > 0
                out[band & (pred >= 0) & ~m] = c
            else:
                inner = -torch.nn.functional.max_pool2d(-t, k, 1, px)[0, 0].numpy() > 0
                edge = m & ~inner
                # shrunk pixels take the most common other class nearby, or no mask
                other = torch.from_numpy(np.where(~m & (pred >= 0), pred, -1).astype(np.float32))[None, None]
                near = torch.nn.functional.max_pool2d(other, k, 1, px)[0, 0].numpy().astype(np.int64)
                out[edge] = near[edge]
        return out

    def segment(self, view: RenderedView) -> tuple[torch.Tensor, list[str]]:
        pred = self.predict_labels(view)
        classes = torch.unique(pred[pred >= 0])
        owner = torch.full_like(pred, -1)
        for i, c in enumerate(classes.tolist()):
            owner[pred == c] = i
        return owner, [self.label_set.class_names[c] for c in classes.tolist()]


def simulate_lifting(scene, class_embeddings: torch.Tensor, *, noise: MaskModelNoise = SCANNET_SIM_V1,
                     num_views: int = 40, seed: int = 0, config=None, progress: bool = False):
    """Render ``num_views`` views of a labelled scene, segment them with :class:`SimulatedMaskModel` and
    lift the masks with the real lifting code (consensus fusion over the label set's classes).

    Args:
        scene: a labelled :class:`~geopurify.io.Scene` (labels and instances).
        class_embeddings: ``(C, D)`` unit embedding of every class of ``scene.label_set`` (for example
            MiniLM embeddings of the class names, or fixed random prototypes): a mask named ``c``
            gets row ``c``, and consensus fusion scores views against the scored classes' rows.
    Returns:
        ``(LiftedFeatures, views)``.
    """
    from ..encoders.maps import MaskFeatures
    from ..lifting.lift import LiftConfig, lift_features
    from .views import render_views, room_cameras, views_to_frames

    ls = scene.label_set
    if scene.labels is None or ls is None:
        raise ValueError(f"scene {scene.name!r} has no labels to simulate a segmenter from")
    if class_embeddings.shape[0] != ls.num_classes:
        raise ValueError(f"need one embedding per class of {ls.name} ({ls.num_classes}), got {class_embeddings.shape[0]}")
    views = render_views(scene, room_cameras(scene, num_views, seed=seed), name=f"{scene.name}_")
    seg = SimulatedMaskModel(ls, noise, seed=seed)
    by_name = {v.frame.name: v for v in views}
    emb = torch.nn.functional.normalize(class_embeddings.float(), dim=1)

    def encode(frame):  # noqa: ANN001, ANN202
        owner, names = seg.segment(by_name[frame.name])
        rows = torch.tensor([ls.index(n) for n in names], dtype=torch.int64)
        return MaskFeatures(owner, emb[rows] if len(rows) else torch.zeros(0, emb.shape[1]))
    scored = ls.scored.nonzero().flatten()
    lifted = lift_features(scene, views_to_frames(views), encode, config=config or LiftConfig(),
                           text_embeddings=emb[scored], logit_scale=50.0, encoder_name="sim-segmenter",
                           settings={"noise": noise.to_dict(), "num_views": num_views, "seed": seed,
                                     "vocabulary": [ls.class_names[c] for c in scored.tolist()]},
                           progress=progress)
    return lifted, views
