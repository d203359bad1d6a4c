"""``tessera gshm`` sub-commands."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tessera.cli import main


def test_calibrate_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            ["gshm", "calibrate", "--epsilon", "0.349", "--delta", "1e-5", "--k", "51914", "--json"]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["sigma"] == pytest.approx(2228.482632, rel=1e-9)
    assert out["tau"] - 1 == pytest.approx(13950.05, rel=1e-6)
    assert out["delta_exact"] <= 1e-5


def test_delta_human(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gshm", "delta", "--epsilon", "1", "--sigma", "2", "--tau", "7", "--k", "5"]) == 0
    assert "delta_exact = 0.1700867177" in capsys.readouterr().out


def test_bad_input_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gshm", "calibrate", "--epsilon", "0", "--delta", "1e-5", "--k", "3"]) == 2
    assert "epsilon" in capsys.readouterr().err
    assert main(["gshm", "calibrate", "--epsilon", "1", "--delta", "2", "--k", "3"]) == 2
    assert main(["gshm", "calibrate", "--epsilon", "1", "--delta", "1e-5", "--k", "0"]) == 2


def test_release_csv(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    rs = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "u": rs.integers(0, 3000, 20000),
            "x": rs.integers(0, 5, 20000),
            "v": rs.integers(0, 4, 20000),
        }
    )
    src = tmp_path / "rows.csv"
    df.to_csv(src, index=False)
    out = tmp_path / "rel.csv"
    args = [
        "gshm",
        "release",
        "--input",
        str(src),
        "--user",
        "u",
        "--key",
        "x",
        "--value",
        "v",
        "--value-bound",
        "3",
        "--epsilon",
        "1",
        "--delta",
        "1e-6",
        "--k",
        "2",
        "--out",
        str(out),
        "--json",
    ]
    assert main(args) == 0
    rel = pd.read_csv(out)
    assert list(rel.columns) == ["x", "noisy_count", "noisy_sum_v"]
    assert len(rel) == 5 and (rel["noisy_count"] > json.loads(capsys.readouterr().out)["tau"]).all()
    # missing column: exit 2, no output file written
    bad = tmp_path / "bad.csv"
    bad_args = [a if a != "x" else "nope" for a in args[:-3]] + ["--out", str(bad)]
    assert main(bad_args) == 2
    assert "key='nope' is not a column" in capsys.readouterr().err
    assert not bad.exists()
