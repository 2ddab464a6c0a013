"""Entry-point plugins behave exactly like built-ins, and one broken plugin breaks only its own name."""

import sys

import numpy as np
import pytest
import torch

import geopurify as gp
from geopurify.encoders import ENCODERS
from geopurify.errors import PluginError, UnknownNameError

PLUGIN = '''
import torch
from geopurify.encoders.maps import DenseFeatures

class ConstantEncoder:
    """A third-party encoder: every pixel gets the same unit vector."""
    name = "constant"
    logit_scale = 10.0

    def __init__(self, source, dim=4):
        self.source, self.dim, self.text_encoder = source, int(dim), None

    def encode_frame(self, frame):
        f = torch.zeros(2, 2, self.dim)
        f[..., 0] = 1.0
        return DenseFeatures(f)
'''


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """A distribution on sys.path with one working and one broken ``geopurify.encoders`` entry point."""
    (tmp_path / "gp_plugin_demo.py").write_text(PLUGIN)
    (tmp_path / "gp_broken_demo.py").write_text("raise ImportError('needs a library that is not installed')\n")
    dist = tmp_path / "gp_plugin_demo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: gp-plugin-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[geopurify.encoders]\nconstant = gp_plugin_demo:ConstantEncoder\n"
                                           "broken = gp_broken_demo:Encoder\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for m in ("gp_plugin_demo", "gp_broken_demo"):
        sys.modules.pop(m, None)


def test_a_plugin_encoder_is_looked_up_and_used_like_a_builtin(plugins, tmp_path):
    assert {"constant", "broken", "clip-hf", "masks", "precomputed"} <= set(ENCODERS.names())
    enc = gp.get_encoder("constant", source=str(tmp_path), dim=3)
    assert enc.name == "constant" and enc.dim == 3
    frame = gp.Frame("f", torch.zeros(8, 8, 3, dtype=torch.uint8), np.array([[8.0, 0, 3.5], [0, 8.0, 3.5], [0, 0, 1]]),
                     np.eye(4), torch.ones(8, 8))
    assert enc.encode_frame(frame).features.shape == (2, 2, 3)
    with pytest.raises(gp.InputError, match="does not take colour .*it takes: source, dim"):
        gp.get_encoder("constant", source="x", colour=1)


def test_a_broken_plugin_breaks_only_its_own_name(plugins, tmp_path):
    with pytest.raises(PluginError, match="'broken' .*cannot be loaded: ImportError: needs a library"):
        gp.get_encoder("broken", source="x")
    assert gp.get_encoder("masks", source=tmp_path).name == "masks"   # the others still resolve
    assert gp.get_encoder("constant", source="x").dim == 4
    with pytest.raises(UnknownNameError, match="unknown encoder 'nope'; available: .*broken.*constant"):
        gp.get_encoder("nope")
