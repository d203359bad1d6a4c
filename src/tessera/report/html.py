"""A small builder for self-contained HTML reports (figures inlined as base64 PNG).

Example:
    >>> r = Report("demo")
    >>> _ = r.heading("Numbers").table({"W2": 0.123456, "steps": 10})
    >>> "<td>0.1235</td>" in r.to_html()
    True
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tessera._optional import require
from tessera._validate import check_positive_int
from tessera.errors import ShapeError, ValidationError

__all__ = ["Report", "image_grid_figure", "scatter_figure"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222}
h1{border-bottom:2px solid #444}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;
text-align:left}th{background:#f3f3f3}.figs{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0}figcaption{font-size:90%;color:#555;text-align:center}
.pass{color:#060;font-weight:bold}.fail{color:#a00;font-weight:bold}pre{background:#f6f6f6;
padding:8px;overflow:auto}
"""


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        cls = "pass" if value else "fail"
        return f'<span class="{cls}">{"yes" if value else "no"}</span>'
    if isinstance(value, float | np.floating):
        return f"{float(value):.4g}"
    return html.escape(str(value))


class Report:
    """Accumulate headings, text, tables and figures; write one HTML file.

    Args:
        title: page title.
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self._parts: list[str] = []
        self._figures: list[str] = []

    def _flush_figures(self) -> None:
        if self._figures:
            self._parts.append('<div class="figs">' + "".join(self._figures) + "</div>")
            self._figures = []

    def heading(self, text: str) -> Report:
        """Add a section heading.

        Args:
            text: heading text.

        Returns:
            self.
        """
        self._flush_figures()
        self._parts.append(f"<h2>{html.escape(text)}</h2>")
        return self

    def text(self, text: str) -> Report:
        """Add a paragraph.

        Args:
            text: plain text (escaped).

        Returns:
            self.
        """
        self._flush_figures()
        self._parts.append(f"<p>{html.escape(text)}</p>")
        return self

    def table(self, rows: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Report:
        """Add a table: a mapping gives two columns, a list of mappings one row each.

        Args:
            rows: ``{"metric": value}`` or ``[{"col": value, ...}, ...]``.

        Returns:
            self.
        """
        self._flush_figures()
        if isinstance(rows, Mapping):
            body = "".join(
                f"<tr><th>{_fmt(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in rows.items()
            )
            self._parts.append(f"<table>{body}</table>")
            return self
        rows = list(rows)
        cols = list(dict.fromkeys(k for r in rows for k in r))
        head = "".join(f"<th>{_fmt(c)}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows
        )
        self._parts.append(f"<table><tr>{head}</tr>{body}</table>")
        return self

    def json(self, data: Any) -> Report:
        """Add a pretty-printed JSON block.

        Args:
            data: JSON-serialisable data.

        Returns:
            self.
        """
        self._flush_figures()
        self._parts.append(f"<pre>{html.escape(json.dumps(data, indent=2, default=str))}</pre>")
        return self

    def figure(self, fig: Any, caption: str = "") -> Report:
        """Add a matplotlib figure as an inline PNG (the figure is closed).

        Args:
            fig: a ``matplotlib.figure.Figure``.
            caption: text under the figure.

        Returns:
            self.
        """
        plt = require("matplotlib.pyplot")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self._figures.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">{cap}</figure>'
        )
        return self

    def extend(self, other: Report) -> Report:
        """Append everything added to ``other`` (e.g. a section built on a scratch report).

        Args:
            other: another report; its title is ignored.

        Returns:
            self.
        """
        self._flush_figures()
        other._flush_figures()
        self._parts.extend(other._parts)
        return self

    def to_html(self) -> str:
        """Render the page.

        Returns:
            The complete HTML document.
        """
        self._flush_figures()
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>{''.join(self._parts)}</body></html>"
        )

    def write(self, path: str | Path) -> Path:
        """Write the page atomically (a temporary file renamed into place).

        Args:
            path: output file.

        Returns:
            The path written.
        """
        from tessera.nn.checkpoint import atomic_write_text

        return atomic_write_text(path, self.to_html())


def _agg() -> Any:
    mpl = require("matplotlib")
    mpl.use("Agg", force=True)
    return require("matplotlib.pyplot")


def image_grid_figure(
    images: Any, *, ncols: int = 10, title: str = "", value_range: tuple[float, float] = (-1.0, 1.0)
) -> Any:
    """A grid of grayscale images.

    Args:
        images: array of shape (n, H, W) or (n, 1, H, W).
        ncols: images per row.
        title: figure title.
        value_range: the (black, white) pixel values.

    Returns:
        A matplotlib Figure.

    Raises:
        ShapeError: if images are not (n, H, W) or (n, 1, H, W).
    """
    check_positive_int("ncols", ncols)
    arr = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise ShapeError(f"images must have shape (n, H, W) or (n, 1, H, W), got {arr.shape}")
    n, h, w = arr.shape
    rows = -(-n // ncols)
    canvas = np.full((rows * (h + 1) + 1, ncols * (w + 1) + 1), value_range[0], dtype=float)
    for i in range(n):
        r, c = divmod(i, ncols)
        canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = arr[
            i
        ]
    plt = _agg()
    fig, ax = plt.subplots(
        figsize=(min(12, 0.6 * ncols * max(1, w / 8)), 0.6 * rows * max(1, h / 8))
    )
    ax.imshow(
        canvas, cmap="gray", vmin=value_range[0], vmax=value_range[1], interpolation="nearest"
    )
    ax.axis("off")
    if title:
        ax.set_title(title)
    return fig


def scatter_figure(samples: Mapping[str, Any], *, title: str = "", lim: float | None = None) -> Any:
    """Side-by-side 2-D scatter plots, one panel per named sample.

    Args:
        samples: ``{"label": array of shape (n, 2)}``.
        title: figure title.
        lim: symmetric axis limit (None: automatic).

    Returns:
        A matplotlib Figure.

    Raises:
        ValidationError: if no samples are given.
        ShapeError: if a sample is not of shape (n, 2).
    """
    if not samples:
        raise ValidationError("samples must name at least one (n, 2) array")
    plt = _agg()
    fig, axes = plt.subplots(1, len(samples), figsize=(3.2 * len(samples), 3.2), squeeze=False)
    for ax, (name, pts) in zip(axes[0], samples.items(), strict=True):
        arr = np.asarray(pts.detach().cpu() if hasattr(pts, "detach") else pts)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ShapeError(f"samples[{name!r}] must have shape (n, 2), got {arr.shape}")
        ax.scatter(arr[:, 0], arr[:, 1], s=2, alpha=0.5)
        ax.set_title(name)
        ax.set_aspect("equal")
        if lim is not None:
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
    if title:
        fig.suptitle(title)
    return fig
