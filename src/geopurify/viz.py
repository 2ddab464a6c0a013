"""Pictures of results: rendered PNG views and a standalone HTML 3D point viewer.

* :func:`render_png` draws points with per-point colours from a camera (z-buffer splats, the same
  renderer as the simulator) and writes a PNG.
* :func:`write_html_viewer` writes one self-contained HTML file (no server, no network, no external
  script): the points and one colour layer per result are embedded as base64 typed arrays, drawn on a
  ``<canvas>`` with a z-buffer; drag to orbit, wheel to zoom, buttons switch layers.
"""

from __future__ import annotations

import base64
import json
import os

import numpy as np
import torch
from PIL import Image

from ._fileio import atomic_path, atomic_write_text
from .labels import IGNORE_COLOR, palette
from .render import fill_holes, point_spacing, render_depth


def label_colors(labels: torch.Tensor | np.ndarray, num_classes: int) -> np.ndarray:
    """``(N, 3) uint8`` palette colour per label (-1: grey)."""
    lab = np.asarray(labels).astype(np.int64)
    pal = np.concatenate([palette(num_classes), np.array([IGNORE_COLOR], dtype=np.uint8)])
    return pal[np.where(lab >= 0, lab, num_classes)]


def heat_colors(values: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(N, 3) uint8`` dark-blue -> yellow colour map of values in [0, 1]."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0, 1)[:, None]
    lo, mid, hi = np.array([30, 20, 90.0]), np.array([200, 40, 120.0]), np.array([255, 230, 60.0])
    return np.where(v < 0.5, lo + (mid - lo) * v * 2, mid + (hi - mid) * (v - 0.5) * 2).round().astype(np.uint8)


def render_png(path: str | os.PathLike[str], coords: torch.Tensor, colors: np.ndarray, cam_to_world: np.ndarray,
               K: np.ndarray, size: tuple[int, int] = (320, 240), background: int = 255) -> None:
    """Render ``(N, 3) uint8`` point colours from a camera and write a PNG atomically."""
    vals = torch.from_numpy(np.asarray(colors, dtype=np.float32))
    depth, img = render_depth(coords, cam_to_world, K, size, point_spacing(coords), values=vals)
    assert img is not None
    depth, img = fill_holes(depth, img)
    arr = img.numpy().round().clip(0, 255).astype(np.uint8)
    arr[depth.numpy() <= 0] = background
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def write_html_viewer(path: str | os.PathLike[str], coords: torch.Tensor | np.ndarray, layers: dict[str, np.ndarray],
                      title: str = "geopurify", max_points: int = 150_000, seed: int = 0) -> None:
    """Write a standalone HTML viewer of the points with one colour layer per entry of ``layers``
    (``name -> (N, 3) uint8``); at most ``max_points`` random points are embedded."""
    xyz = np.asarray(coords, dtype=np.float32)
    n = len(xyz)
    keep = np.sort(np.random.default_rng(seed).permutation(n)[:max_points]) if n > max_points else np.arange(n)
    xyz = xyz[keep]
    xyz = xyz - (xyz.min(0) + xyz.max(0)) / 2
    data = {"n": int(len(xyz)), "xyz": _b64(xyz.astype(np.float32)),
            "layers": {k: _b64(np.asarray(v, dtype=np.uint8)[keep]) for k, v in layers.items()}}
    html = _HTML.replace("__TITLE__", title).replace("__DATA__", json.dumps(data))
    atomic_write_text(path, html)


_HTML = r"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>__TITLE__</title>
<style>body{margin:0;background:#1b1d23;color:#ddd;font:14px sans-serif}#bar{position:fixed;top:8px;left:8px}
button{margin:2px;padding:4px 8px;background:#333;color:#ddd;border:1px solid #555;border-radius:3px;cursor:pointer}
button.on{background:#4a6fa5}canvas{display:block}</style></head>
<body><div id="bar"><b>__TITLE__</b> <span id="btns"></span> <small>drag: orbit, wheel: zoom</small></div>
<canvas id="c"></canvas>
<script>
const D = __DATA__;
function dec(s, T) {
  const b = atob(s), u = new Uint8Array(b.length);
  for (let i = 0; i < b.length; i++) u[i] = b.charCodeAt(i);
  return new T(u.buffer);
}
const xyz = dec(D.xyz, Float32Array), n = D.n, layers = {};
for (const k in D.layers) layers[k] = dec(D.layers[k], Uint8Array);
let names = Object.keys(layers), cur = names[0], yaw = 0.8, pitch = 0.9, dist = 0;
for (let i = 0; i < n * 3; i++) dist = Math.max(dist, Math.abs(xyz[i]));
dist *= 2.6;
const cv = document.getElementById("c"), ctx = cv.getContext("2d");
function draw() {
  const W = cv.width = innerWidth, H = cv.height = innerHeight, img = ctx.createImageData(W, H), px = img.data;
  const zb = new Float32Array(W * H).fill(Infinity), f = 0.9 * Math.min(W, H);
  const cy = Math.cos(yaw), sy = Math.sin(yaw), cp = Math.cos(pitch), sp = Math.sin(pitch), col = layers[cur];
  for (let i = 0; i < W * H; i++) { px[4 * i] = 27; px[4 * i + 1] = 29; px[4 * i + 2] = 35; px[4 * i + 3] = 255; }
  for (let i = 0; i < n; i++) {
    const x = xyz[3 * i], y = xyz[3 * i + 1], z = xyz[3 * i + 2];
    const x1 = cy * x - sy * y, y1 = sy * x + cy * y;            // yaw about z
    const y2 = cp * y1 - sp * z, z2 = sp * y1 + cp * z;          // pitch about x
    const d = dist + y2; if (d <= 0.1) continue;
    const u = Math.round(W / 2 + f * x1 / d), v = Math.round(H / 2 - f * z2 / d);
    for (let dv = 0; dv < 2; dv++) for (let du = 0; du < 2; du++) {
      const uu = u + du, vv = v + dv; if (uu < 0 || vv < 0 || uu >= W || vv >= H) continue;
      const p = vv * W + uu; if (d >= zb[p]) continue; zb[p] = d;
      px[4 * p] = col[3 * i]; px[4 * p + 1] = col[3 * i + 1]; px[4 * p + 2] = col[3 * i + 2];
    }
  }
  ctx.putImageData(img, 0, 0);
  document.title = "__TITLE__ (" + cur + ")";
}
const btns = document.getElementById("btns");
for (const k of names) {
  const b = document.createElement("button");
  b.textContent = k;
  b.onclick = () => { cur = k; sel(); draw(); };
  btns.appendChild(b);
}
function sel() { for (const b of btns.children) b.className = b.textContent === cur ? "on" : ""; }
let drag = null;
cv.onmousedown = e => drag = [e.clientX, e.clientY];
onmouseup = () => drag = null;
onmousemove = e => {
  if (!drag) return;
  yaw += (e.clientX - drag[0]) * 0.01;
  pitch = Math.max(-1.5, Math.min(1.5, pitch + (e.clientY - drag[1]) * 0.01));
  drag = [e.clientX, e.clientY];
  draw();
};
cv.onwheel = e => { dist *= e.deltaY > 0 ? 1.1 : 0.9; draw(); e.preventDefault(); };
onresize = draw; sel(); draw();
</script></body></html>
"""
