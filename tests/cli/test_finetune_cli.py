from __future__ import annotations

import json

import numpy as np
import pytest

from tessera.cli import main


@pytest.fixture(scope="module")
def moons_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("flow")
    rc = main(
        ["flows", "train", "--data", "moons", "--steps", "10", "--out", str(out), "--no-progress"]
    )
    assert rc == 0
    return out


@pytest.mark.parametrize("method", ["am", "draft"])
def test_finetune_then_sample(moons_ckpt, tmp_path, capsys, method: str) -> None:
    out = tmp_path / "ft"
    args = ["finetune", "--ckpt", str(moons_ckpt), "--reward", "linear:1,0", "--lam", "0.5"]
    args += ["--steps", "3", "--n-time-steps", "5", "--batch-size", "8", "--out", str(out)]
    rc = main([*args, "--method", method, "--no-progress", "--json"])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["method"] == {"am": "adjoint_matching", "draft": "draft"}[method]
    history = json.loads((out / "history.json").read_text())
    assert history["step"] == [3]
    npy = tmp_path / "s.npy"
    rc = main(
        ["flows", "sample", "--ckpt", str(out), "--n", "7", "--steps", "4", "--out", str(npy)]
    )
    assert rc == 0
    assert np.load(npy).shape == (7, 2)


def test_finetune_usage_errors_exit_2(moons_ckpt, tmp_path, capsys) -> None:
    out = tmp_path / "ft"
    base = ["finetune", "--ckpt", str(moons_ckpt), "--out", str(out), "--steps", "2"]
    assert main([*base, "--reward", "linear:1,0,3", "--lam", "1"]) == 2
    assert "coordinates" in capsys.readouterr().err
    assert main([*base, "--reward", "classifier:3", "--lam", "1"]) == 2
    assert main([*base, "--reward", "linear:1,0", "--lam", "-1"]) == 2
    assert "lam" in capsys.readouterr().err
    assert main([*base, "--reward", "linear:1,0", "--lam", "1", "--diffusion", "x"]) == 2
    assert not out.exists()
