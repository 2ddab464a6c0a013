"""Pictures and files for people: colours, rendered PNG views, the HTML viewer, coloured PLY exports."""

from .colors import IGNORE_COLOR, heat_colors, label_colors, label_legend, palette
from .export import write_heat_ply, write_label_ply
from .html import write_html_viewer
from .pictures import annotate, label_panel, overview_camera, render_png, render_view, write_panel

__all__ = ["palette", "IGNORE_COLOR", "label_colors", "label_legend", "heat_colors", "render_png", "render_view",
           "annotate", "write_panel", "label_panel", "overview_camera", "write_html_viewer",
           "write_label_ply", "write_heat_ply"]
