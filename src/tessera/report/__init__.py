"""Results (JSON-ready dicts) to one self-contained HTML page with embedded plots.

matplotlib is imported lazily, only when a figure is drawn.
"""

from __future__ import annotations

from tessera.report.html import Report, image_grid_figure, scatter_figure

__all__ = ["Report", "image_grid_figure", "scatter_figure"]
