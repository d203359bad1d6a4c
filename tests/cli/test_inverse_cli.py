from __future__ import annotations

import json

import numpy as np
import pytest

from tessera.cli import main


@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("flow")
    assert (
        main(
            [
                "flows",
                "train",
                "--data",
                "digits",
                "--steps",
                "10",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    return out


@pytest.mark.parametrize("method", ["pinv", "ot-ode", "dps", "pigdm", "gaussian"])
def test_inverse_solve_writes_all_outputs(digits_ckpt, tmp_path, capsys, method: str) -> None:
    out = tmp_path / "inv"
    args = [
        "inverse",
        "solve",
        "--ckpt",
        str(digits_ckpt),
        "--task",
        "superres",
        "--method",
        method,
    ]
    assert main([*args, "--n", "3", "--out", str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert np.load(out / "reconstructions.npy").shape == (3, 64)
    assert (out / "grid.png").stat().st_size > 0
    assert json.loads((out / "metrics.json").read_text())["psnr"] == metrics["psnr"]
    assert 0.0 <= metrics["judge_accuracy"] <= 1.0


def test_inverse_solve_bad_input_writes_nothing(digits_ckpt, tmp_path) -> None:
    out = tmp_path / "inv"
    args = [
        "inverse",
        "solve",
        "--ckpt",
        str(digits_ckpt),
        "--task",
        "inpaint",
        "--method",
        "ot-ode",
    ]
    assert main([*args, "--n", "0", "--out", str(out)]) == 2
    assert not out.exists()
    assert main([*args[:-2], "--method", "magic", "--out", str(out)]) == 2
