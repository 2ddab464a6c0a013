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


PAYLOADS = ['x";document.documentElement.setAttribute("data-pwned","yes");"',
            '</title><script>document.documentElement.setAttribute("data-pwned","yes")</script>',
            "</script><script>document.documentElement.setAttribute('data-pwned','yes')</script>"]


def test_viewer_escapes_the_title_and_layer_names(room, tmp_path):
    cols = label_colors(room.labels, 20)
    for i, bad in enumerate(PAYLOADS):
        write_html_viewer(tmp_path / f"{i}.html", room.coords, {bad: cols}, title=bad)
        text = (tmp_path / f"{i}.html").read_text()
        assert "<script>document" not in text and "</title><script>" not in text
        assert text.count("</script>") == 1                # only the viewer's own script ends


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (CI installs it: apt-get install chromium)")
def test_a_hostile_scan_name_stays_text_in_the_browser(room, tmp_path):
    cols = label_colors(room.labels, 20)
    for i, bad in enumerate(PAYLOADS):
        html = tmp_path / f"{i}.html"
        write_html_viewer(html, room.coords, {"labels": cols, bad: cols}, title=f"demo: {bad}")
        dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
                              "--dump-dom", html.as_uri()], check=True, capture_output=True, text=True, timeout=120).stdout
        html_tag = dom.split("<html", 1)[1].split(">", 1)[0]
        assert "data-pwned" not in html_tag              # the payload never ran ...
        assert 'setAttribute("data-pwned"' in dom or "setAttribute('data-pwned'" in dom   # ... it is text
        assert "<canvas" in dom and 'id="btns"' in dom       # the viewer itself did
        buttons = dom.split('id="btns"')[1].split("</span>")[0]
        assert buttons.count("<button") == 2             # the hostile layer name is a button label, as text
