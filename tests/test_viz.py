"""Pictures: PNG rendering and the standalone HTML viewer in a real headless Chromium."""

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from geopurify.camera import look_at
from geopurify.sim import make_room
from geopurify.sim.views import SCANNET_K_320
from geopurify.viz import heat_colors, label_colors, render_png, write_html_viewer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def room():
    return make_room(seed=6, density=100)


def test_colour_maps():
    c = label_colors(np.array([0, 1, -1]), 20)
    assert c.shape == (3, 3) and c.dtype == np.uint8 and tuple(c[2]) == (128, 128, 128) and tuple(c[0]) != tuple(c[1])
    h = heat_colors(np.array([0.0, 0.5, 1.0]))
    assert tuple(h[0]) == (30, 20, 90) and tuple(h[2]) == (255, 230, 60)


def test_render_png(room, tmp_path):
    pose = look_at([3.0, 2.5, 1.6], [0.5, 0.5, 0.5])
    render_png(tmp_path / "v.png", room.coords, label_colors(room.labels, 20), pose, SCANNET_K_320)
    img = np.asarray(Image.open(tmp_path / "v.png"))
    assert img.shape == (240, 320, 3)
    assert (img != 255).any(-1).mean() > 0.5            # mostly covered by the room
    assert len(np.unique(img.reshape(-1, 3), axis=0)) >= 5


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (CI installs it: apt-get install chromium)")
def test_html_viewer_renders_in_headless_chromium(room, tmp_path):
    layers = {"labels": label_colors(room.labels, 20), "colour": (room.colors.numpy() * 255).astype(np.uint8)}
    html = tmp_path / "viewer.html"
    write_html_viewer(html, room.coords, layers, title="test")
    text = html.read_text()
    assert "<script src" not in text and "http" not in text.split("<script>")[1]   # self-contained
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=800,600", "--virtual-time-budget=5000", html.as_uri()],
                   check=True, capture_output=True, timeout=120)
    img = np.asarray(Image.open(shot).convert("RGB"))
    background = np.array([27, 29, 35])
    drawn = np.abs(img.astype(int) - background).sum(-1) > 30
    assert drawn.mean() > 0.05                            # the points were drawn
    palette_hits = sum(((img == c).all(-1)).sum() for c in np.unique(layers["labels"], axis=0))
    assert palette_hits > 2000                            # in the label layer's colours
