"""Import optional dependencies with an error that names the pip extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]

# module name -> the tessera extra that installs it
_EXTRA_OF = {
    "torch": "flows",
    "torchdiffeq": "flows",
    "safetensors": "flows",
    "tqdm": "flows",
    "sklearn": "flows",
    "mlxtend": "flows",
    "matplotlib": "report",
    "duckdb": "interference",
    "pandas": "interference",
    "pyarrow": "interference",
    "pyspark": "spark",
}


def require(module: str, *, extra: str | None = None) -> ModuleType:
    """Import ``module`` or raise an ImportError that says which extra installs it.

    Args:
        module: dotted module name, e.g. ``"torchdiffeq"``.
        extra: the tessera extra that provides it; looked up from the top-level
            module name when omitted.

    Returns:
        The imported module.

    Raises:
        ImportError: when the module is not installed; the message names the
            command ``pip install 'tessera[EXTRA]'``.

    Example:
        >>> require("math").sqrt(4.0)
        2.0
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        name = extra or _EXTRA_OF.get(top, "all")
        raise ImportError(
            f"{module!r} is required for this functionality but is not installed; "
            f"install it with: pip install 'tessera[{name}]'"
        ) from exc
