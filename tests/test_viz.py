"""Pictures: PNG rendering and the standalone HTML viewer in a real headless Chromium."""

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from geopurify.camera import look_at
from geopurify.sim import make_room
from geopurify.sim.views import SCANNET_K_320
from geopurify.viz import annotate, heat_colors, label_colors, label_legend, render_png, write_html_viewer, write_panel

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


def test_pictures_carry_a_title_a_legend_and_a_colour_bar(room, tmp_path):
    pose = look_at([3.0, 2.5, 1.6], [0.5, 0.5, 0.5])
    names = [f"class {i}" for i in range(20)]
    legend = label_legend(room.labels, names)
    assert [n for n, _ in legend] == [names[c] for c in np.unique(room.labels[room.labels >= 0])]
    render_png(tmp_path / "a.png", room.coords, label_colors(room.labels, 20), pose, SCANNET_K_320,
               title="room: ground truth", legend=legend)
    img = np.asarray(Image.open(tmp_path / "a.png"))
    assert img.shape[1] == 320 + 120 and img.shape[0] >= 240 + 22
    for _, rgb in legend:                                 # every swatch is drawn in the legend column
        assert (img[:, 320:] == rgb).all(-1).sum() >= 50
    assert (img[:22, :200] < 100).all(-1).sum() > 30      # dark title text on the white band
    heat = np.linspace(0, 1, room.num_points)
    bar = annotate(np.full((240, 320, 3), 255, np.uint8), colorbar="relevance")
    assert bar.shape == (270, 320, 3)
    assert (bar[240:] == heat_colors(np.array([0.0]))[0]).all(-1).any() and \
        (bar[240:] == heat_colors(np.array([1.0]))[0]).all(-1).any()        # both ends of the colour map
    tiles = [(k, np.full((240, 320, 3), v, np.uint8)) for k, v in (("colour", 10), ("ground truth", 60),
                                                                    ("direct", 110), ("purified", 160))]
    write_panel(tmp_path / "p.png", tiles, "room: panel", legend)
    panel = np.asarray(Image.open(tmp_path / "p.png"))
    assert panel.shape[1] == 4 * 324 + 120 and panel.shape[0] >= 22 + 22 + 240
    for i, v in enumerate((10, 60, 110, 160)):              # the four tiles in order, left to right
        assert (panel[100, i * 324 + 5: i * 324 + 300] == v).all()
    assert heat.shape == (room.num_points,)


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
        write_html_viewer(html, room.coords, {"labels": cols, bad: cols}, title=f"demo: {bad}",
                          legends={"labels": [(bad, (1, 2, 3)), ("chair", (4, 5, 6))]}, titles={"labels": bad})
        dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
                              "--dump-dom", html.as_uri()], check=True, capture_output=True, text=True, timeout=120).stdout
        html_tag = dom.split("<html", 1)[1].split(">", 1)[0]
        assert "data-pwned" not in html_tag              # the payload never ran ...
        assert 'setAttribute("data-pwned"' in dom or "setAttribute('data-pwned'" in dom   # ... it is text
        assert "<canvas" in dom and 'id="btns"' in dom       # the viewer itself did
        buttons = dom.split('id="btns"')[1].split("</span>")[0]
        assert buttons.count("<button") == 2             # the hostile layer name is a button label, as text
        legend = dom.split('id="legend"')[1].split('<canvas')[0]
        assert "chair" in legend and legend.count('class="sw"') == 2 and "rgb(1, 2, 3)" in legend   # legend as text
