"""tessera.privacy.gshm never imports torch (nor the engines' heavy modules at import)."""

from __future__ import annotations

import subprocess
import sys


def test_gshm_imports_no_torch_or_engines() -> None:
    code = (
        "import sys, tessera.privacy.gshm, tessera.privacy; print('\\n'.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {m.split(".")[0] for m in out.stdout.split()}
    forbidden = {"torch", "duckdb", "pyspark", "pandas", "matplotlib", "sklearn"}
    assert not (loaded & forbidden), sorted(loaded & forbidden)


def test_cli_gshm_parser_imports_no_torch() -> None:
    code = (
        "import sys, tessera.cli; tessera.cli.build_parser(); "
        "import tessera.cli.gshm; print('\\n'.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {m.split(".")[0] for m in out.stdout.split()}
    assert "torch" not in loaded and "duckdb" not in loaded
