"""``tessera bipartite simulate`` and ``analyze``: JSON output, exit codes, no partial files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tessera.cli import main


def test_simulate_then_analyze(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "exp"
    assert (
        main(
            [
                "bipartite",
                "simulate",
                "--out",
                str(out),
                "--n-analysis",
                "500",
                "--n-randomization",
                "100",
                "--tau",
                "2",
                "--seed",
                "3",
                "--json",
            ]
        )
        == 0
    )
    truth = json.loads((out / "truth.json").read_text())
    capsys.readouterr()
    res_file = tmp_path / "res.json"
    rc = main(
        [
            "bipartite",
            "analyze",
            "--edges",
            str(out / "edges.parquet"),
            "--assignments",
            str(out / "assignments.parquet"),
            "--outcomes",
            str(out / "outcomes.parquet"),
            "--covariates",
            "y_pre",
            "--adjustment",
            "in_sample",
            "--json",
            "--out",
            str(res_file),
        ]
    )
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(res_file.read_text())
    assert printed["method"] == "ca_erl[in_sample]"
    assert printed["ci_low"] < printed["ci_high"]
    assert abs(printed["estimate"] - truth["true_effect"]) < 6 * printed["se"]
    # the same directory again is refused: nothing is overwritten
    assert main(["bipartite", "simulate", "--out", str(out)]) == 2


def test_bad_input_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "exp"
    assert (
        main(
            [
                "bipartite",
                "simulate",
                "--out",
                str(out),
                "--n-analysis",
                "200",
                "--n-randomization",
                "50",
                "--format",
                "csv",
            ]
        )
        == 0
    )
    res_file = tmp_path / "res.json"
    rc = main(
        [
            "bipartite",
            "analyze",
            "--edges",
            str(out / "edges.csv"),
            "--assignments",
            str(out / "assignments.csv"),
            "--outcomes",
            str(out / "outcomes.csv"),
            "--covariates",
            "not_a_column",
            "--out",
            str(res_file),
        ]
    )
    assert rc == 2
    assert "not_a_column" in capsys.readouterr().err
    assert not res_file.exists()
    assert list(tmp_path.iterdir()) == [out]
    rc = main(["bipartite", "simulate", "--out", str(tmp_path / "bad"), "--p", "1.5"])
    assert rc == 2
    assert not (tmp_path / "bad").exists()
    assert main(["bipartite", "analyze", "--edges", "x"]) == 2  # usage error


def test_parser_imports_nothing_heavy() -> None:
    code = (
        "import sys, tessera.cli; tessera.cli.build_parser(); "
        "print(sorted(m for m in ('duckdb', 'pyspark', 'pandas', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_interference_never_imports_torch() -> None:
    code = (
        "import sys, tessera.interference.bipartite, tessera.interference.engines, "
        "tessera.interference.simulate, tessera.cli.bipartite; "
        "print(sorted(m for m in ('torch', 'pyspark', 'duckdb') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
