"""Every script in examples/ runs (so the examples cannot rot)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SHORT_ARGS = {"train_toy_flow.py": ["50"]}  # a few steps: this checks that it runs


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_example_runs(script: str) -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *SHORT_ARGS.get(script, [])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip()
