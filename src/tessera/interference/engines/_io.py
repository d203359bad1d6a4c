"""Input tables -> pandas, and atomic file writes (no torch, no partial files)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tessera._optional import require
from tessera.errors import UnsupportedError, ValidationError

__all__ = ["atomic_write_bytes", "atomic_write_dir", "is_path", "table_kind", "to_pandas"]

_SUFFIXES = (".parquet", ".pq", ".csv", ".tsv")


def is_path(obj: Any) -> bool:
    """Whether ``obj`` names a Parquet or CSV file (by suffix) or is a ``Path``.

    Args:
        obj: anything.

    Returns:
        True for a ``pathlib.Path`` or a string ending in a known suffix.
    """
    if isinstance(obj, Path):
        return True
    return isinstance(obj, str) and obj.lower().endswith(_SUFFIXES)


def table_kind(obj: Any) -> str:
    """Classify a table-like input.

    Args:
        obj: pandas or Arrow frame, mapping of arrays, path, DuckDB relation, table
            name or Spark DataFrame.

    Returns:
        One of ``pandas``, ``arrow``, ``mapping``, ``path``, ``duckdb``, ``spark``, ``name``.

    Raises:
        UnsupportedError: for anything else.
    """
    mod = type(obj).__module__
    name = type(obj).__name__
    if is_path(obj):
        return "path"
    if mod.startswith("pandas") and name == "DataFrame":
        return "pandas"
    if mod.startswith("pyarrow") and name == "Table":
        return "arrow"
    if mod.startswith("duckdb") and "Relation" in name:
        return "duckdb"
    if mod.startswith("pyspark") and name == "DataFrame":
        return "spark"
    if isinstance(obj, Mapping):
        return "mapping"
    if isinstance(obj, str):
        return "name"
    raise UnsupportedError(
        f"unsupported table type {type(obj).__name__}; pass a pandas DataFrame, a pyarrow "
        "Table, a dict of arrays, a .parquet/.csv path, a DuckDB relation or table name, or "
        "a Spark DataFrame"
    )


def to_pandas(obj: Any, role: str) -> Any:
    """Materialise a table-like input as a pandas DataFrame (numpy engine).

    Args:
        obj: see :func:`table_kind`.
        role: the table's role for messages (``edges`` ...).

    Returns:
        A pandas DataFrame.

    Raises:
        ValidationError: for a missing file or a bare table name.
        UnsupportedError: for an unsupported type.
    """
    pd = require("pandas")
    kind = table_kind(obj)
    if kind == "pandas":
        return obj
    if kind == "arrow":
        return obj.to_pandas()
    if kind == "mapping":
        return pd.DataFrame(dict(obj))
    if kind == "duckdb":
        return obj.df()
    if kind == "spark":
        return obj.toPandas()
    if kind == "path":
        path = Path(obj)
        if not path.exists():
            raise ValidationError(
                f"{role}: file {str(path)!r} does not exist; pass an existing path"
            )
        if path.suffix.lower() in (".csv", ".tsv"):
            return pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
        return pd.read_parquet(path)
    raise ValidationError(
        f"{role}: {obj!r} is neither a .parquet/.csv path nor a frame; table names need "
        "engine='duckdb' with connection=..."
    )


def _tmp_in(parent: Path, name: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=parent))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + replace).

    Args:
        path: destination file.
        data: the bytes.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_dir(path: str | os.PathLike[str], write: Callable[[Path], None]) -> None:
    """Create directory ``path`` atomically: ``write(tmpdir)`` fills it, then a rename.

    Nothing appears at ``path`` unless ``write`` returns normally.

    Args:
        path: destination directory; must not exist or be an empty directory.
        write: callable filling the temporary directory it receives.

    Raises:
        ValidationError: if ``path`` exists and is a non-empty directory or a file.
    """
    dest = Path(path)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ValidationError(
            f"output path {str(dest)!r} exists and is not an empty directory; pass a new path"
        )
    tmp = _tmp_in(dest.parent, dest.name)
    try:
        write(tmp)
        if dest.exists():
            dest.rmdir()
        os.replace(tmp, dest)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
