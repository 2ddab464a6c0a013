"""The live 3D viewer (``geopurify view``): a viser page over a :class:`~geopurify.viz.viewer_state.ViewerState`.

viser (extra ``viewer``) serves a WebGL scene and a panel of controls over a websocket; each control's
callback calls one method of the state and redraws the point cloud. It binds 127.0.0.1 unless told
otherwise; when the default port is taken it takes a free one, a port given explicitly must be free.
"""

from __future__ import annotations

import html
import ipaddress
import logging
import socket
import threading
import time

import numpy as np

from .._optional import require
from ..errors import GeopurifyError, InputError
from ..render import point_spacing
from .viewer_state import HEATMAP, ViewerState

log = logging.getLogger(__name__)
DEFAULT_PORT = 8080


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(host: str, port: int | None) -> int:
    """``port`` when free (else InputError); with None, :data:`DEFAULT_PORT` or, when taken, a free port."""
    if port is not None:
        if not _port_free(host, port):
            raise InputError(f"port {port} on {host} is taken: choose another --port, or leave it out for a free one")
        return port
    if _port_free(host, DEFAULT_PORT):
        return DEFAULT_PORT
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        free = int(s.getsockname()[1])
    log.warning("port %d is taken; using port %d", DEFAULT_PORT, free)
    return free


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _legend_html(items: list[tuple[str, tuple[int, int, int]]], heat: bool) -> str:
    if heat:
        return ('<div style="font-size:12px">relevance 0 <span style="display:inline-block;width:120px;height:10px;'
                'background:linear-gradient(90deg,rgb(30,20,90),rgb(200,40,120),rgb(255,230,60))"></span> 1</div>')
    rows = "".join(f'<div style="font-size:12px"><span style="display:inline-block;width:10px;height:10px;'
                   f'background:rgb{c};margin-right:6px"></span>{html.escape(n)}</div>' for n, c in items)
    return rows or '<div style="font-size:12px">(no classes: a colour layer)</div>'


class Viewer:
    """The viser server and its controls (see :func:`start_viewer`)."""

    def __init__(self, state: ViewerState, host: str, port: int) -> None:
        viser = require("viser", "viewer", feature="geopurify view")
        self.state, self._lock = state, threading.Lock()
        self.server = viser.ViserServer(host=host, port=port, label=f"geopurify: {state.scene.name}", verbose=False)
        lo, hi = state.coords.min(0), state.coords.max(0)
        centre = (lo + hi) / 2
        self.server.scene.set_up_direction("+z")
        self.server.initial_camera.look_at = tuple(float(v) for v in centre)
        self.server.initial_camera.position = tuple(float(v) for v in centre + np.array([1.2, 1.2, 0.9]) * (hi - lo).max())
        gui, n = self.server.gui, len(state.coords)
        gui.add_markdown(f"**{html.escape(state.scene.name)}**: {n:,} points")
        self.layer = gui.add_dropdown("layer", tuple(state.layers), initial_value="colour")
        spacing = point_spacing(state.scene.coords)                 # points touch at about 1.5 spacings
        self.size = gui.add_slider("point size", min=0.002, max=0.08, step=0.001,
                                   initial_value=float(np.clip(1.5 * spacing, 0.004, 0.08)))
        self.max_points = gui.add_slider("max points", min=min(n, 1000), max=n, step=1, initial_value=min(n, 300_000))
        self.vocab = gui.add_text("vocabulary", ", ".join(state.vocabulary))
        self.relabel = gui.add_button("relabel")
        self.query = gui.add_text("query", "")
        self.search = gui.add_button("search")
        self.threshold = gui.add_slider("threshold", min=0.0, max=1.0, step=0.01, initial_value=0.0)
        self.legend = gui.add_html("")
        self.picked = gui.add_markdown("click a point for its top-5 classes")
        self.export = gui.add_button("export layer")
        self.status = gui.add_markdown("")
        self.layer.on_update(lambda _: self.redraw())
        for control in (self.size, self.max_points, self.threshold):
            control.on_update(lambda _: self.redraw())
        self.relabel.on_click(lambda _: self._guard(self._relabel))
        self.search.on_click(lambda _: self._guard(self._search))
        self.export.on_click(lambda _: self._guard(self._export))
        self.server.scene.on_click()(lambda e: self._guard(lambda: self._pick(e.ray_origin, e.ray_direction)))
        self.redraw()

    @property
    def port(self) -> int:
        return int(self.server.get_port())

    def _guard(self, action) -> None:  # noqa: ANN001 - a callable
        """Run a control's action; bad input becomes a status line, not a dead callback."""
        try:
            with self._lock:
                action()
        except GeopurifyError as exc:
            self.status.content = f"error: {html.escape(str(exc))}"

    def redraw(self) -> None:
        s, layer = self.state, self.layer.value
        keep = s.subsample(int(self.max_points.value))
        keep = keep[s.visible(layer, float(self.threshold.value))[keep]]
        self.server.scene.add_point_cloud("/points", s.coords[keep], s.layers[layer][keep],
                                          point_size=float(self.size.value), point_shape="rounded",
                                          point_shading="flat")              # the legend's colours exactly
        self.legend.content = f"<b>{html.escape(layer)}</b>" + _legend_html(s.legend(layer), layer == HEATMAP)

    def _set_layers(self, current: str) -> None:
        self.layer.options = tuple(self.state.layers)
        self.layer.value = current
        self.redraw()

    def _relabel(self) -> None:
        names = self.state.set_vocabulary(self.vocab.value)
        self.status.content = f"relabelled with {len(names)} classes"
        self._set_layers(self.state.methods[-1])

    def _search(self) -> None:
        self.state.query(self.query.value)
        self.status.content = f"query: {html.escape(self.state.query_text)}"
        self._set_layers(HEATMAP)

    def _export(self) -> None:
        files = self.state.export(self.layer.value)
        self.status.content = "wrote " + ", ".join(html.escape(f.name) for f in files)

    def _pick(self, origin, direction) -> None:  # noqa: ANN001 - 3-tuples
        i = self.state.pick(np.asarray(origin), np.asarray(direction))
        if i is None:
            self.picked.content = "no point under the cursor"
            return
        rows = "\n".join(f"- {html.escape(n)}: {v:.3f}" for n, v in self.state.top_classes(i))
        self.picked.content = f"point {i}:\n{rows}"

    def stop(self) -> None:
        self.server.stop()

    def serve_forever(self) -> None:
        """Block until Ctrl-C (SIGINT), then stop the server."""
        try:
            while True:
                time.sleep(0.25)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()


def start_viewer(state: ViewerState, host: str = "127.0.0.1", port: int | None = None) -> Viewer:
    """Serve ``state`` on ``host`` (a warning unless it is a loopback address) and ``port`` (:func:`choose_port`).
    Returns the running :class:`Viewer`; its URL is ``http://<host>:<viewer.port>``; ``viewer.stop()`` ends it."""
    if not _is_loopback(host):
        log.warning("binding %s: anyone who can reach this machine on that address can see the scan and run "
                    "queries (no authentication)", host)
    return Viewer(state, host, choose_port(host, port))
