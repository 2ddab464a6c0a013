import csv

import numpy as np
import pytest
import torch

from geopurify.errors import InputError
from geopurify.labels import (
    LABEL_SETS,
    MATTERPORT21,
    NYU40,
    SCANNET20,
    SCANNET200,
    get_label_set,
    map_source_ids,
)
from geopurify.viz import palette


def _naive_map(ids, label_set):
    out = []
    for i in ids:
        out.append(label_set.source_ids.index(i) if i in label_set.source_ids else -1)
    return out


@pytest.mark.parametrize("name", ["scannet20", "matterport21", "nyu40"])
def test_map_source_ids_matches_loop(name, rng):
    ls = LABEL_SETS[name]
    ids = rng.integers(0, 41, size=500)
    assert map_source_ids(ids, ls).tolist() == _naive_map(ids.tolist(), ls)


def test_map_source_ids_scannet200_and_shape(rng):
    ids = rng.integers(0, 1300, size=(7, 11))
    out = map_source_ids(ids, SCANNET200)
    assert out.shape == (7, 11) and out.dtype == torch.int64
    assert out.flatten().tolist() == _naive_map(ids.flatten().tolist(), SCANNET200)


def test_unknown_source_ids_raise():
    with pytest.raises(InputError, match="not valid nyu40 ids"):
        map_source_ids(np.array([1, 41]), SCANNET20)
    with pytest.raises(InputError, match="not valid"):
        map_source_ids(np.array([-3]), SCANNET200)
    with pytest.raises(InputError, match="integers"):
        map_source_ids(np.array([1.0]), SCANNET20)


def test_scannet20_protocol():
    assert SCANNET20.num_classes == 20
    assert SCANNET20.source_ids == (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
    assert int(SCANNET20.scored.sum()) == 19 and not SCANNET20.scored[SCANNET20.index("otherfurniture")]
    fg = SCANNET20.foreground
    assert not fg[SCANNET20.index("wall")] and not fg[SCANNET20.index("floor")] and fg[SCANNET20.index("chair")]
    assert int(fg.sum()) == 17
    assert MATTERPORT21.num_classes == 21 and MATTERPORT21.class_names[-1] == "ceiling"
    assert int(MATTERPORT21.scored.sum()) == 21
    assert SCANNET200.num_classes == 200 and NYU40.num_classes == 40


def test_lookup_errors_list_choices():
    with pytest.raises(KeyError, match="scannet20"):
        get_label_set("nope")
    with pytest.raises(KeyError, match="not a class"):
        SCANNET20.index("spaceship")


def test_palette_is_distinct_and_deterministic():
    p = palette(200)
    assert p.shape == (200, 3) and p.dtype == np.uint8
    assert len({tuple(c) for c in p[:40]}) == 40
    assert (palette(200) == p).all()


def test_names_agree_with_scannet_table(shared_data):
    """NYU40 and ScanNet200 names/ids against ScanNet's own raw-category table (read, not copied)."""
    rows = list(csv.DictReader(open(shared_data / "meta" / "scannetv2-labels.combined.tsv"), delimiter="\t"))
    nyu = {int(r["nyu40id"]): r["nyu40class"] for r in rows if r["nyu40id"]}
    differ = [(i, name, nyu.get(i)) for i, name in enumerate(NYU40.class_names, start=1) if nyu.get(i) != name]
    # the table misspells one NYU class; we use the correct spelling
    assert differ == [(24, "refrigerator", "refridgerator")]
    by_id = {int(r["id"]): r["category"] for r in rows}
    mismatched = [(i, n, by_id.get(i)) for i, n in zip(SCANNET200.source_ids, SCANNET200.class_names)
                  if by_id.get(i) != n]
    # the benchmark renames exactly one category ("stick" -> "object")
    assert mismatched == [(1163, "object", "stick")]
