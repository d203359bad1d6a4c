from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from tessera.cli import main


def test_train_then_sample(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    rc = main(
        [
            "flows",
            "train",
            "--data",
            "digits",
            "--steps",
            "20",
            "--out",
            str(out),
            "--no-progress",
            "--json",
        ]
    )
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["model_dir"].endswith("model")
    npy = tmp_path / "s.npy"
    rc = main(
        [
            "flows",
            "sample",
            "--ckpt",
            str(out),
            "--n",
            "12",
            "--steps",
            "4",
            "--out",
            str(npy),
            "--json",
        ]
    )
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    assert np.load(npy).shape == (12, 64)
    assert payload["files"] == [str(npy), str(npy.with_suffix(".png"))]


def test_class_conditional_sampling_with_guidance(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert (
        main(
            [
                "flows",
                "train",
                "--data",
                "digits",
                "--class-cond",
                "--steps",
                "5",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    npy = tmp_path / "s.npy"
    args = ["flows", "sample", "--ckpt", str(out), "--n", "4", "--steps", "2", "--out", str(npy)]
    assert main([*args, "--label", "3", "--guidance", "1.5"]) == 0
    assert np.load(npy).shape == (4, 64)
    assert main([*args, "--label", "11"]) == 2  # out of range
    assert "labels must lie in [0, 9]" in capsys.readouterr().err


def test_usage_errors_exit_2(tmp_path, capsys) -> None:
    assert main(["flows", "train", "--data", "nope", "--out", str(tmp_path)]) == 2
    assert (
        main(["flows", "train", "--data", "moons", "--steps", "0", "--out", str(tmp_path / "x")])
        == 2
    )
    assert "steps must be an integer >= 1" in capsys.readouterr().err
    assert (
        main(
            [
                "flows",
                "sample",
                "--ckpt",
                str(tmp_path / "missing"),
                "--n",
                "3",
                "--out",
                str(tmp_path / "a.npy"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "a.npy").exists()  # nothing written on failure


def test_python_dash_m_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tessera", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.startswith("tessera ")
