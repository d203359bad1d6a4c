"""House rules: import isolation, docstrings on public names, optional-extra errors, rng."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys

import numpy as np
import pytest

import tessera
from tessera._optional import require
from tessera._rng import as_generator, as_rng
from tessera.errors import ValidationError


def _modules_after_import(module: str) -> set[str]:
    # tessera.cli is checked after building the full parser: --help must not need torch
    build = "; tessera.cli.build_parser()" if module == "tessera.cli" else ""
    code = f"import sys, {module}{build}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {m.split(".")[0] for m in out.stdout.split()}


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("tessera", {"torch", "sklearn", "matplotlib", "duckdb", "pyspark"}),
        ("tessera.data", {"torch", "duckdb", "pyspark"}),
        ("tessera.metrics", {"torch", "duckdb", "pyspark"}),
        ("tessera.flows", {"duckdb", "pyspark", "matplotlib"}),
        ("tessera.nn", {"duckdb", "pyspark", "matplotlib"}),
        ("tessera.report", {"duckdb", "pyspark", "matplotlib"}),
        ("tessera.cli", {"torch", "duckdb", "pyspark", "matplotlib"}),
    ],
)
def test_import_isolation(module: str, forbidden: set[str]) -> None:
    loaded = _modules_after_import(module)
    assert not (loaded & forbidden), f"{module} imports {sorted(loaded & forbidden)}"


def _public_objects():
    for info in pkgutil.walk_packages(tessera.__path__, "tessera."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        mod = importlib.import_module(info.name)
        yield info.name, mod
        for name in getattr(mod, "__all__", []):
            yield f"{info.name}.{name}", getattr(mod, name)


def test_every_public_name_has_a_docstring() -> None:
    missing = []
    for qualname, obj in _public_objects():
        if isinstance(obj, tuple | str | int | float | dict):
            continue  # constants
        if not inspect.getdoc(obj):
            missing.append(qualname)
        if inspect.isclass(obj):
            for meth_name, meth in vars(obj).items():
                if meth_name.startswith("_") or not callable(meth):
                    continue
                if not inspect.getdoc(getattr(obj, meth_name)):
                    missing.append(f"{qualname}.{meth_name}")
    assert not missing, missing


def test_missing_extra_names_the_pip_command() -> None:
    with pytest.raises(ImportError, match=r"pip install 'tessera\[flows\]'"):
        require("torchdiffeq_not_installed_xyz", extra="flows")
    with pytest.raises(ImportError, match=r"tessera\[report\]"):
        require("matplotlib.not_a_module")


def test_rng_normalisation() -> None:
    assert as_rng(3).integers(1000) == as_rng(3).integers(1000)
    g = np.random.default_rng(0)
    assert as_rng(g) is g
    with pytest.raises(ValidationError, match="RandomState"):
        as_rng(np.random.RandomState(0))
    with pytest.raises(ValidationError, match="rng must be"):
        as_rng("seed")
    with pytest.raises(ValidationError, match="generator must be"):
        as_generator(1.5)
