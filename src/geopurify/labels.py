"""Label sets: benchmark class lists, their source ids, and the one raw-id mapping function.

Convention (stated once): a per-point label is an ``int64`` index into ``LabelSet.class_names``;
``LabelSet.ignore_index`` (always ``-1``) marks points that are unannotated or whose source id is
not part of the set. Source ids are the ids a dataset stores on disk (NYU40 ids for ScanNet v2's
``.labels.ply`` and for Matterport3D, raw ScanNet category ids for ScanNet200).

Some classes exist in a set but are not scored (GeoPurify's ScanNet protocol scores 19 classes:
``otherfurniture`` is ignored); ``unscored`` lists them. ``background`` lists the classes that the
"foreground" metrics leave out (wall, floor, ceiling).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import InputError, UnknownNameError

IGNORE_INDEX = -1

# fmt: off
NYU40_NAMES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)

SCANNET20_NYU_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)

# ScanNet200 benchmark: raw ScanNet category ids (the `id` column of scannetv2-labels.combined.tsv)
# and names, in the benchmark's official order.
SCANNET200_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 21, 22, 23, 24, 26, 27, 28, 29,
    31, 32, 33, 34, 35, 36, 38, 39, 40, 41, 42, 44, 45, 46, 47, 48, 49, 50, 51, 52, 54, 55, 56, 57,
    58, 59, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 82, 84, 86,
    87, 88, 89, 90, 93, 95, 96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 110, 112, 115,
    116, 118, 120, 121, 122, 125, 128, 130, 131, 132, 134, 136, 138, 139, 140, 141, 145, 148, 154,
    155, 156, 157, 159, 161, 163, 165, 166, 168, 169, 170, 177, 180, 185, 188, 191, 193, 195, 202,
    208, 213, 214, 221, 229, 230, 232, 233, 242, 250, 261, 264, 276, 283, 286, 300, 304, 312, 323,
    325, 331, 342, 356, 370, 392, 395, 399, 408, 417, 488, 540, 562, 570, 572, 581, 609, 748, 776,
    1156, 1163, 1164, 1165, 1166, 1167, 1168, 1169, 1170, 1171, 1172, 1173, 1174, 1175, 1176, 1178,
    1179, 1180, 1181, 1182, 1183, 1184, 1185, 1186, 1187, 1188, 1189, 1190, 1191,
)
SCANNET200_NAMES = (
    "wall", "chair", "floor", "table", "door", "couch", "cabinet", "shelf", "desk", "office chair",
    "bed", "pillow", "sink", "picture", "window", "toilet", "bookshelf", "monitor", "curtain", "book",
    "armchair", "coffee table", "box", "refrigerator", "lamp", "kitchen cabinet", "towel", "clothes",
    "tv", "nightstand", "counter", "dresser", "stool", "cushion", "plant", "ceiling", "bathtub",
    "end table", "dining table", "keyboard", "bag", "backpack", "toilet paper", "printer", "tv stand",
    "whiteboard", "blanket", "shower curtain", "trash can", "closet", "stairs", "microwave", "stove",
    "shoe", "computer tower", "bottle", "bin", "ottoman", "bench", "board", "washing machine",
    "mirror", "copier", "basket", "sofa chair", "file cabinet", "fan", "laptop", "shower", "paper",
    "person", "paper towel dispenser", "oven", "blinds", "rack", "plate", "blackboard", "piano",
    "suitcase", "rail", "radiator", "recycling bin", "container", "wardrobe", "soap dispenser",
    "telephone", "bucket", "clock", "stand", "light", "laundry basket", "pipe", "clothes dryer",
    "guitar", "toilet paper holder", "seat", "speaker", "column", "bicycle", "ladder",
    "bathroom stall", "shower wall", "cup", "jacket", "storage bin", "coffee maker", "dishwasher",
    "paper towel roll", "machine", "mat", "windowsill", "bar", "toaster", "bulletin board",
    "ironing board", "fireplace", "soap dish", "kitchen counter", "doorframe",
    "toilet paper dispenser", "mini fridge", "fire extinguisher", "ball", "hat", "shower curtain rod",
    "water cooler", "paper cutter", "tray", "shower door", "pillar", "ledge", "toaster oven", "mouse",
    "toilet seat cover dispenser", "furniture", "cart", "storage container", "scale", "tissue box",
    "light switch", "crate", "power outlet", "decoration", "sign", "projector", "closet door",
    "vacuum cleaner", "candle", "plunger", "stuffed animal", "headphones", "dish rack", "broom",
    "guitar case", "range hood", "dustpan", "hair dryer", "water bottle", "handicap bar", "purse",
    "vent", "shower floor", "water pitcher", "mailbox", "bowl", "paper bag", "alarm clock",
    "music stand", "projector screen", "divider", "laundry detergent", "bathroom counter", "object",
    "bathroom vanity", "closet wall", "laundry hamper", "bathroom stall door", "ceiling light",
    "trash bin", "dumbbell", "stair rail", "tube", "bathroom cabinet", "cd case", "closet rod",
    "coffee kettle", "structure", "shower head", "keyboard piano", "case of water bottles",
    "coat rack", "storage organizer", "folded chair", "fire alarm", "power strip", "calendar",
    "poster", "potted plant", "luggage", "mattress",
)
# fmt: on

_BACKGROUND = ("wall", "floor", "ceiling")

# Largest valid id of each on-disk id space (0 = unannotated). None: open-ended.
SOURCE_MAX_ID: dict[str, int | None] = {"nyu40": 40, "scannet-raw": None}


@dataclass(frozen=True)
class LabelSet:
    """A named list of classes and the source ids that map onto them.

    Attributes:
        name: registry name, e.g. ``"scannet20"``.
        class_names: class ``i`` is ``class_names[i]``.
        source_ids: ``source_ids[i]`` is the on-disk id of class ``i`` (in ``source``'s id space).
        source: the id space of ``source_ids`` (``"nyu40"``, ``"scannet-raw"``).
        unscored: class names present in the set but not scored by evaluation.
        background: class names left out by foreground metrics.
        ignore_index: the label of unannotated or unmapped points (always -1).
    """

    name: str
    class_names: tuple[str, ...]
    source_ids: tuple[int, ...]
    source: str
    unscored: tuple[str, ...] = ()
    background: tuple[str, ...] = field(default=_BACKGROUND)
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        if len(self.class_names) != len(self.source_ids):
            raise ValueError(f"label set {self.name!r}: {len(self.class_names)} names but "
                             f"{len(self.source_ids)} source ids")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"label set {self.name!r}: duplicate class names")
        if len(set(self.source_ids)) != len(self.source_ids) or min(self.source_ids) < 0:
            raise ValueError(f"label set {self.name!r}: source ids must be unique and non-negative")
        unknown = [c for c in self.unscored if c not in self.class_names]
        if unknown:
            raise ValueError(f"label set {self.name!r}: unscored classes {unknown} are not in the set")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def index(self, class_name: str) -> int:
        """Index of ``class_name``; ``KeyError`` listing the classes if it is unknown."""
        try:
            return self.class_names.index(class_name)
        except ValueError:
            raise UnknownNameError(f"{class_name!r} is not a class of {self.name}: {', '.join(self.class_names)}") \
                from None

    @property
    def scored(self) -> torch.Tensor:
        """``(C,) bool``: which classes evaluation scores."""
        return torch.tensor([c not in self.unscored for c in self.class_names])

    @property
    def foreground(self) -> torch.Tensor:
        """``(C,) bool``: scored classes that are not background (wall, floor, ceiling)."""
        return self.scored & torch.tensor([c not in self.background for c in self.class_names])

    def map_source_ids(self, ids: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Map on-disk ids to class indices; see :func:`map_source_ids`."""
        return map_source_ids(ids, self)


def map_source_ids(ids: np.ndarray | torch.Tensor, label_set: LabelSet) -> torch.Tensor:
    """Map on-disk source ids (e.g. NYU40 ids) to class indices of ``label_set``.

    Args:
        ids: integer array of any shape with ids in ``label_set.source``'s id space.
    Returns:
        LongTensor of the same shape: the class index, or ``label_set.ignore_index`` where the id
        is a valid id of the source space that the set does not keep (0 = unannotated included).
    Raises:
        InputError: ids that do not exist in the source id space (negative, or above its largest
            id, e.g. 41 for NYU40): such files are mislabelled, not merely outside the set.
    """
    ids_t = torch.as_tensor(np.asarray(ids) if not isinstance(ids, torch.Tensor) else ids)
    if ids_t.dtype.is_floating_point or ids_t.dtype == torch.bool:
        raise InputError(f"label ids must be integers, got {ids_t.dtype}")
    ids_t = ids_t.to(torch.int64)
    max_id = SOURCE_MAX_ID.get(label_set.source)
    bad = (ids_t < 0) if max_id is None else (ids_t < 0) | (ids_t > max_id)
    if bool(bad.any()):
        examples = sorted(set(ids_t[bad].flatten()[:1000].tolist()))[:5]
        raise InputError(f"{int(bad.sum())} label ids are not valid {label_set.source} ids "
                         f"(0..{'' if max_id is None else max_id}), e.g. {examples}")
    table = torch.full((max(label_set.source_ids) + 2,), label_set.ignore_index, dtype=torch.int64)
    table[torch.tensor(label_set.source_ids)] = torch.arange(label_set.num_classes)
    out_of_range = (ids_t < 0) | (ids_t >= table.numel())
    return torch.where(out_of_range, label_set.ignore_index, table[ids_t.clamp(0, table.numel() - 1)])


def _nyu_subset(name: str, nyu_ids: tuple[int, ...], unscored: tuple[str, ...] = ()) -> LabelSet:
    return LabelSet(name=name, class_names=tuple(NYU40_NAMES[i - 1] for i in nyu_ids),
                    source_ids=nyu_ids, source="nyu40", unscored=unscored)


SCANNET20 = _nyu_subset("scannet20", SCANNET20_NYU_IDS, unscored=("otherfurniture",))
"""ScanNet v2 benchmark classes; ``otherfurniture`` is present but unscored (GeoPurify's 19-class protocol)."""

SCANNET200 = LabelSet(name="scannet200", class_names=SCANNET200_NAMES, source_ids=SCANNET200_IDS,
                      source="scannet-raw")
"""ScanNet200 benchmark, over raw ScanNet category ids."""

MATTERPORT21 = _nyu_subset("matterport21", SCANNET20_NYU_IDS + (22,))
"""Matterport3D 21 classes: the ScanNet20 classes plus ceiling, all scored."""

NYU40 = _nyu_subset("nyu40", tuple(range(1, 41)))
"""All 40 NYU classes."""

LABEL_SETS: dict[str, LabelSet] = {s.name: s for s in (SCANNET20, SCANNET200, MATTERPORT21, NYU40)}


def get_label_set(name: str | LabelSet) -> LabelSet:
    """Look up a label set by name (``KeyError`` lists the available names)."""
    if isinstance(name, LabelSet):
        return name
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise UnknownNameError(f"unknown label set {name!r}; available: {', '.join(LABEL_SETS)}") from None


def resolve_vocabulary(spec: str) -> list[str]:
    """Class names from a label-set name (its scored classes), a text file (one name per line), or
    a comma-separated list (``"chair,table,lamp"``)."""
    if spec in LABEL_SETS:
        ls = LABEL_SETS[spec]
        return [c for c in ls.class_names if c not in ls.unscored]
    path = Path(spec)
    try:
        is_file = path.is_file()
    except OSError:                                   # e.g. a long inline list: not a file name
        is_file = False
    if is_file:
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if not names:
            raise InputError("vocabulary file has no class names", path)
    elif "," not in spec and (path.suffix in (".txt", ".csv") or "/" in spec):
        raise InputError("vocabulary file not found (a list of classes is written 'chair,table,...')", path)
    else:
        names = [c.strip() for c in spec.split(",") if c.strip()]
    if not names:
        raise InputError(f"empty vocabulary {spec!r}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"the vocabulary names {', '.join(map(repr, dup))} more than once")
    return names
