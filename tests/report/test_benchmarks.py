"""The demo report's benchmark sections render the committed JSON, and only that."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tessera.report import Report
from tessera.report.benchmarks import _SECTIONS, add_benchmark_sections

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


@pytest.mark.skipif(not RESULTS.is_dir(), reason="needs a checkout's benchmarks/results")
def test_committed_results_render_with_their_figures(tmp_path) -> None:
    rep = Report("r")
    done = add_benchmark_sections(rep, RESULTS)
    html = rep.to_html()
    for name in done:
        assert _SECTIONS[name][0] in html
    if "inverse" in done:
        inv = json.loads((RESULTS / "inverse.json").read_text())
        assert f"{inv['rows'][0]['psnr']:.4g}" in html
        for v in inv.get("summary", {}).values():
            assert f"{v['ot_ode_minus_pinv_db']:.4g}" in html
    if "finetune" in done:
        q = json.loads((RESULTS / "finetune.json").read_text()).get("quality")
        if q:
            # one grid for the base and one per model
            assert html.count("data:image/png;base64,") >= 1 + len(q["models"])


def test_missing_and_malformed_files_add_nothing_half_done(tmp_path) -> None:
    (tmp_path / "inverse.json").write_text(json.dumps({"rows": [{"task": "x"}], "date": 1}))
    (tmp_path / "finetune.json").write_text(json.dumps({"quality": {"target": {}}}))
    (tmp_path / "bipartite.json").write_text("{not json")
    rep = Report("r")
    done = add_benchmark_sections(rep, tmp_path)
    html = rep.to_html()
    assert done == ["inverse"]
    assert "Reward fine-tuning" not in html  # its section failed and was left out whole
    assert "not found" in html and "benchmarks/finetune.py" in html


def test_an_empty_folder_says_what_to_run(tmp_path) -> None:
    rep = Report("r")
    done = add_benchmark_sections(rep, tmp_path / "none")
    assert done == []
    assert "benchmarks/bipartite.py" in rep.to_html()
