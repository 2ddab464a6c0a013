"""A standalone HTML 3D point viewer: one self-contained file (no server, no network, no external script).

The points and one colour layer per result are embedded as base64 typed arrays, drawn on a
``<canvas>`` with a z-buffer; drag to orbit, wheel to zoom, buttons switch layers. Every string from
the data (the title, layer names) is escaped for the context it lands in.
"""

from __future__ import annotations

import base64
import html as htmllib
import json
import os

import numpy as np
import torch

from .._fileio import atomic_write_text


def _js(value: object) -> str:
    """``value`` as a JavaScript literal safe inside ``<script>``: JSON with ``<``, ``>``, ``&`` escaped."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def write_html_viewer(path: str | os.PathLike[str], coords: torch.Tensor | np.ndarray, layers: dict[str, np.ndarray],
                      title: str = "geopurify", max_points: int = 150_000, seed: int = 0, *,
                      legends: dict[str, list[tuple[str, tuple[int, int, int]]]] | None = None,
                      titles: dict[str, str] | None = None) -> None:
    """Write a standalone HTML viewer of the points with one colour layer per entry of ``layers``
    (``name -> (N, 3) uint8``); at most ``max_points`` random points are embedded. ``titles[layer]`` is
    shown above the current layer (default: its name) and ``legends[layer]`` (class name, colour) below it;
    a layer whose name starts with ``query`` gets the heat colour bar."""
    xyz = np.asarray(coords, dtype=np.float32)
    n = len(xyz)
    keep = np.sort(np.random.default_rng(seed).permutation(n)[:max_points]) if n > max_points else np.arange(n)
    xyz = xyz[keep]
    xyz = xyz - (xyz.min(0) + xyz.max(0)) / 2
    data = {"n": int(len(xyz)), "xyz": _b64(xyz.astype(np.float32)),
            "layers": {k: _b64(np.asarray(v, dtype=np.uint8)[keep]) for k, v in layers.items()},
            "titles": {k: (titles or {}).get(k, k) for k in layers},
            "legends": {k: [[str(n), [int(c) for c in rgb]] for n, rgb in (legends or {}).get(k, [])] for k in layers}}
    # the title is text in <title>/<b> (HTML-escaped) and a string in the script (JSON, with "<" escaped so
    # that no "</script>" can end the script early)
    html = (_HTML.replace("__TITLE__", htmllib.escape(title)).replace("__JS_TITLE__", _js(title))
            .replace("__DATA__", _js(data)))
    atomic_write_text(path, html)


_HTML = r"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>__TITLE__</title>
<style>body{margin:0;background:#1b1d23;color:#ddd;font:14px sans-serif}#bar{position:fixed;top:8px;left:8px}
button{margin:2px;padding:4px 8px;background:#333;color:#ddd;border:1px solid #555;border-radius:3px;cursor:pointer}
button.on{background:#4a6fa5}canvas{display:block}
#info{position:fixed;top:44px;left:8px;background:rgba(20,22,28,.85);padding:6px 10px;border-radius:4px;max-width:260px}
#info .sw{display:inline-block;width:11px;height:11px;margin-right:6px;border:1px solid #555}
#ramp{width:160px;height:10px;background:linear-gradient(90deg,rgb(30,20,90),rgb(200,40,120),rgb(255,230,60))}
</style></head>
<body><div id="bar"><b>__TITLE__</b> <span id="btns"></span> <small>drag: orbit, wheel: zoom</small></div>
<div id="info"><div id="ltitle" style="font-weight:bold"></div><div id="legend"></div></div>
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
  document.title = __JS_TITLE__ + " (" + cur + ")";
}
const btns = document.getElementById("btns");
for (const k of names) {
  const b = document.createElement("button");
  b.textContent = k;
  b.onclick = () => { cur = k; sel(); draw(); };
  btns.appendChild(b);
}
function sel() {
  for (const b of btns.children) b.className = b.textContent === cur ? "on" : "";
  document.getElementById("ltitle").textContent = D.titles[cur];
  const lg = document.getElementById("legend");
  lg.replaceChildren();
  if (cur.startsWith("query")) {
    const r = document.createElement("div"), t = document.createElement("small");
    r.id = "ramp"; t.textContent = "relevance: 0 (left) to 1 (right)"; lg.append(r, t);
  }
  for (const [name, c] of D.legends[cur]) {
    const row = document.createElement("div"), sw = document.createElement("span");
    sw.className = "sw"; sw.style.background = "rgb(" + c.map(Number).join(",") + ")";
    row.append(sw, document.createTextNode(name)); lg.appendChild(row);
  }
}
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
