from __future__ import annotations

import numpy as np
import pytest

from tessera.errors import ShapeError, ValidationError
from tessera.report import Report, image_grid_figure, scatter_figure


def test_report_is_self_contained_and_escaped(tmp_path) -> None:
    r = Report("t <1>")
    r.heading("a & b").text("<script>").table({"x": 0.5, "ok": True})
    r.table([{"k": 1, "v": 2.0}, {"k": 2}])
    r.figure(scatter_figure({"pts": np.zeros((10, 2))}), "cap")
    r.figure(image_grid_figure(np.zeros((12, 8, 8)), ncols=5))
    path = r.write(tmp_path / "r.html")
    html = path.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert html.count("data:image/png;base64,") == 2
    assert "http" not in html  # nothing fetched from the network
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]


def test_bad_input() -> None:
    with pytest.raises(ShapeError):
        image_grid_figure(np.zeros((3, 8)))
    with pytest.raises(ShapeError):
        scatter_figure({"a": np.zeros((3, 3))})
    with pytest.raises(ValidationError):
        scatter_figure({})
