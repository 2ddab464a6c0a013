import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from geopurify.errors import InputError
from geopurify.io.ply import read_ply, write_ply
from geopurify.viz import IGNORE_COLOR, palette, write_label_ply


@pytest.mark.parametrize("binary", [True, False])
def test_round_trip(tmp_path, rng, binary):
    xyz = rng.normal(size=(100, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, size=(100, 3)).astype(np.uint8)
    nrm = rng.normal(size=(100, 3)).astype(np.float32)
    faces = rng.integers(0, 100, size=(20, 3))
    path = tmp_path / "a.ply"
    write_ply(path, xyz, rgb=rgb, normals=nrm, faces=faces, scalars={"label": np.arange(100)}, binary=binary)
    out = read_ply(path)
    assert np.allclose(out.xyz, xyz, atol=1e-6)
    assert np.allclose(out.rgb, rgb / 255.0)
    assert np.allclose(out.normals, nrm, atol=1e-6)
    assert (out.faces == faces).all()
    assert (out.properties["label"] == np.arange(100)).all()
    assert not list(tmp_path.glob(".*tmp*")), "no temporary file is left behind"


def test_label_ply_round_trip(tmp_path, rng):
    xyz = rng.normal(size=(50, 3))
    labels = rng.integers(-1, 20, size=50)
    path = tmp_path / "pred.ply"
    write_label_ply(path, xyz, labels, 20)
    out = read_ply(path)
    assert (out.properties["label"] == labels).all()
    expect = np.where((labels == -1)[:, None], IGNORE_COLOR, palette(20)[labels.clip(0)]) / 255.0
    assert np.allclose(out.rgb, expect)
    with pytest.raises(ValueError, match="outside"):
        write_label_ply(path, xyz, np.full(50, 20), 20)


def test_polygons_are_triangulated_and_float_colours_read(tmp_path):
    v = np.array([(0, 0, 0, 0.5, 0.5, 0.5), (1, 0, 0, 1.0, 0, 0), (1, 1, 0, 0, 1.0, 0), (0, 1, 0, 0, 0, 1.0)],
                 dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "f4"), ("green", "f4"), ("blue", "f4")])
    f = np.array([([0, 1, 2, 3],)], dtype=[("vertex_indices", "i4", (4,))])
    PlyData([PlyElement.describe(v, "vertex"), PlyElement.describe(f, "face")]).write(str(tmp_path / "q.ply"))
    out = read_ply(tmp_path / "q.ply")
    assert out.faces.tolist() == [[0, 1, 2], [0, 2, 3]]
    assert np.allclose(out.rgb[1], [1, 0, 0])


def test_truncated_and_corrupt_files_name_the_file(tmp_path, rng):
    path = tmp_path / "t.ply"
    write_ply(path, rng.normal(size=(1000, 3)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"t\.ply: truncated or corrupt"):
        read_ply(path)
    (tmp_path / "junk.ply").write_bytes(b"not a ply at all")
    with pytest.raises(InputError, match=r"junk\.ply"):
        read_ply(tmp_path / "junk.ply")
    with pytest.raises(InputError, match="not found"):
        read_ply(tmp_path / "missing.ply")


def test_invalid_contents(tmp_path):
    v = np.array([(0, 0)], dtype=[("x", "f4"), ("y", "f4")])
    PlyData([PlyElement.describe(v, "vertex")]).write(str(tmp_path / "noz.ply"))
    with pytest.raises(InputError, match="x/y/z"):
        read_ply(tmp_path / "noz.ply")
    write_ply(tmp_path / "nan.ply", np.array([[0, 0, np.nan], [0, 0, 0]]))
    with pytest.raises(InputError, match="NaN"):
        read_ply(tmp_path / "nan.ply")
    write_ply(tmp_path / "badface.ply", np.zeros((3, 3)), faces=np.array([[0, 1, 7]]))
    with pytest.raises(InputError, match="face indices"):
        read_ply(tmp_path / "badface.ply")
