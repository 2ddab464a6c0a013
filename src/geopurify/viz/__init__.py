"""Pictures and files for people: colours, rendered PNG views, the HTML viewer, coloured PLY exports."""

from .colors import IGNORE_COLOR, heat_colors, label_colors, palette
from .export import write_label_ply
from .html import write_html_viewer
from .pictures import render_png

__all__ = ["palette", "IGNORE_COLOR", "label_colors", "heat_colors", "render_png", "write_html_viewer",
           "write_label_ply"]
