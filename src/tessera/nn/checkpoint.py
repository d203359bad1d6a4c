"""Checkpoints: safetensors weights + a JSON config, always written atomically.

A model checkpoint is a directory holding ``model.safetensors`` (the state dict)
and ``config.json``::

    {"format": "tessera.model/1", "model_class": "TimeMLP",
     "model_config": {...}, "extra": {...}, "tessera_version": "0.1.0"}

:func:`save_model` writes both files into a fresh temporary directory next to the
target, fsyncs them, and swaps it into place: on Linux with one atomic
``renameat2(RENAME_EXCHANGE)``; elsewhere with two ``os.rename`` calls (old
directory aside, new one in), where a crash between them leaves the previous
checkpoint intact under ``.<name>.old-*``. A reader therefore never sees a
half-written checkpoint, and a failure never damages the previous one.

The same module provides the atomic single-file writers used across tessera:
:func:`atomic_write_bytes`, :func:`atomic_write_text` and :func:`save_tensors`.

Example:
    >>> import tempfile
    >>> from tessera.nn import TimeMLP, TimeMLPConfig
    >>> model = TimeMLP(TimeMLPConfig(dim=2, hidden=8, depth=1))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = save_model(f"{d}/ckpt", model, extra={"step": 3})
    ...     loaded = load_model(path)
    >>> type(loaded.model).__name__, loaded.extra
    ('TimeMLP', {'step': 3})
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import json
import os
import secrets
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from tessera._optional import require
from tessera.errors import UnsupportedError, ValidationError

__all__ = [
    "CONFIG_FILE",
    "FORMAT",
    "WEIGHTS_FILE",
    "LoadedModel",
    "atomic_write_bytes",
    "atomic_write_text",
    "load_model",
    "load_tensors",
    "register_model",
    "registered_models",
    "save_model",
    "save_tensors",
]

FORMAT = "tessera.model/1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

_C = TypeVar("_C")

# name -> (model class, config class)
_REGISTRY: dict[str, tuple[type[nn.Module], type]] = {}


# --------------------------------------------------------------------------- registry


def register_model(name: str, model_cls: type[nn.Module], config_cls: type) -> None:
    """Register a model class so that checkpoints can name it and :func:`load_model` rebuild it.

    The model must be constructible as ``model_cls(config)``, keep the config as
    ``model.config``, and ``config_cls`` must provide ``to_dict()`` and
    ``from_dict(d)``. Registering the same classes again is a no-op.

    Args:
        name: the name stored in ``config.json`` (``"model_class"``).
        model_cls: an ``nn.Module`` subclass.
        config_cls: its config class.

    Raises:
        ValidationError: if ``name`` is empty, ``model_cls`` is not an ``nn.Module``
            subclass, ``config_cls`` lacks ``from_dict``/``to_dict``, or ``name`` is
            already registered to different classes.

    Example:
        >>> from tessera.nn import TimeMLP, TimeMLPConfig
        >>> register_model("TimeMLP", TimeMLP, TimeMLPConfig)  # already there: no-op
        >>> "TimeMLP" in registered_models()
        True
    """
    if not isinstance(name, str) or not name:
        raise ValidationError(f"name must be a non-empty string, got {name!r}")
    if not (isinstance(model_cls, type) and issubclass(model_cls, nn.Module)):
        raise ValidationError(f"model_cls must be an nn.Module subclass, got {model_cls!r}")
    if not (hasattr(config_cls, "from_dict") and hasattr(config_cls, "to_dict")):
        raise ValidationError(
            f"config_cls must define from_dict() and to_dict(), got {config_cls!r}"
        )
    old = _REGISTRY.get(name)
    if old is not None and old != (model_cls, config_cls):
        if _same_qualname(old[0], model_cls) and _same_qualname(old[1], config_cls):
            pass  # the defining module was re-imported; the new classes replace the old
        else:
            raise ValidationError(
                f"model name {name!r} is already registered to {old[0].__qualname__}; "
                "choose another name"
            )
    _REGISTRY[name] = (model_cls, config_cls)


def registered_models() -> tuple[str, ...]:
    """Return the registered model names, sorted.

    Returns:
        Tuple of names usable in ``config.json``'s ``"model_class"``.

    Example:
        >>> {"TimeMLP", "UNet"} <= set(registered_models())
        True
    """
    _ensure_builtins()
    return tuple(sorted(_REGISTRY))


def _same_qualname(a: type, b: type) -> bool:
    return (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def _ensure_builtins() -> None:
    # mlp.py and unet.py register themselves on import; make sure they were imported.
    import tessera.nn.mlp
    import tessera.nn.unet  # noqa: F401


def _name_of(model: nn.Module) -> str:
    _ensure_builtins()
    for name, (model_cls, _) in _REGISTRY.items():
        if type(model) is model_cls:
            return name
    raise UnsupportedError(
        f"model of type {type(model).__qualname__} is not registered (registered: "
        f"{', '.join(sorted(_REGISTRY))}); call tessera.nn.register_model(name, "
        "model_cls, config_cls) first"
    )


# --------------------------------------------------------------------------- config helpers


def _config_to_dict(config: Any) -> dict[str, Any]:
    """Plain-JSON dict of a config dataclass (tuples become lists in JSON)."""
    return dataclasses.asdict(config)


def _config_from_dict(cls: type[_C], d: Mapping[str, Any]) -> _C:
    """Build a config dataclass from a dict, rejecting unknown and missing keys."""
    if not isinstance(d, Mapping):
        raise ValidationError(f"{cls.__name__}.from_dict needs a dict, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValidationError(
            f"unknown {cls.__name__} key(s) {unknown}; valid keys are {sorted(fields)}"
        )
    missing = sorted(
        name
        for name, f in fields.items()
        if name not in d
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise ValidationError(f"{cls.__name__} is missing required key(s) {missing}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return cls(**kwargs)


# --------------------------------------------------------------------------- atomic files


def _fsync_dir(directory: Path) -> None:
    if sys.platform.startswith("win"):  # pragma: no cover - directories cannot be fsynced
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    """Create ``path`` exclusively (mode 0o666 minus umask), write, flush and fsync."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically.

    The bytes go to a temporary file in the same directory, which is flushed,
    fsynced and then moved over ``path`` with ``os.replace``. Readers see either
    the old file or the complete new one; on any error the temporary file is
    removed and ``path`` is untouched. Missing parent directories are created.

    Args:
        path: destination file.
        data: the bytes to write.

    Returns:
        The destination as a ``Path``.

    Raises:
        ValidationError: if ``data`` is not bytes-like or ``path`` is a directory.
        OSError: if the file system refuses the write.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = atomic_write_bytes(f"{d}/a.bin", b"abc")
        ...     p.read_bytes()
        b'abc'
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValidationError(f"data must be bytes, got {type(data).__name__}")
    path = Path(path)
    if path.is_dir():
        raise ValidationError(f"path {str(path)!r} is a directory; pass a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        _write_synced(tmp, bytes(data))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`).

    Args:
        path: destination file.
        text: the text to write.
        encoding: text encoding.

    Returns:
        The destination as a ``Path``.

    Raises:
        ValidationError: if ``text`` is not a string or ``path`` is a directory.
        OSError: if the file system refuses the write.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     atomic_write_text(f"{d}/a.txt", "hi").read_text()
        'hi'
    """
    if not isinstance(text, str):
        raise ValidationError(f"text must be a str, got {type(text).__name__}")
    return atomic_write_bytes(path, text.encode(encoding))


def _tensors_for_saving(tensors: Mapping[str, Tensor], what: str) -> dict[str, Tensor]:
    """Detached, contiguous CPU tensors, unshared (safetensors rejects shared storage)."""
    if not isinstance(tensors, Mapping):
        raise ValidationError(
            f"{what} must be a dict of str -> Tensor, got {type(tensors).__name__}"
        )
    out: dict[str, Tensor] = {}
    seen: set[tuple[str, int]] = set()
    for k, v in tensors.items():
        if not isinstance(k, str):
            raise ValidationError(f"{what} keys must be strings, got {k!r}")
        if not isinstance(v, Tensor):
            raise ValidationError(f"{what}[{k!r}] must be a Tensor, got {type(v).__name__}")
        v = v.detach().cpu().contiguous()
        key = (str(v.device), v.untyped_storage().data_ptr())
        if v.numel() and key in seen:
            v = v.clone()
        seen.add(key)
        out[k] = v
    return out


def save_tensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, Tensor],
    *,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Save a flat dict of tensors to one safetensors file, atomically.

    Tensors are detached, moved to CPU and made contiguous; tensors sharing storage
    are cloned (safetensors refuses shared storage).

    Args:
        path: destination file (conventionally ``*.safetensors``).
        tensors: mapping of names to tensors of any shape and dtype.
        metadata: optional string-to-string header metadata.

    Returns:
        The destination as a ``Path``.

    Raises:
        ValidationError: if a key is not a string, a value is not a Tensor, or
            ``metadata`` is not a dict of strings.

    Example:
        >>> import tempfile, torch
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = save_tensors(f"{d}/s.safetensors", {"step": torch.tensor(7)})
        ...     load_tensors(p)["step"].item()
        7
    """
    st = require("safetensors.torch")
    flat = _tensors_for_saving(tensors, "tensors")
    if metadata is not None and not (
        isinstance(metadata, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise ValidationError(
            f"metadata must be a dict of str -> str, got {metadata!r}; convert values with str()"
        )
    data = st.save(flat, metadata=dict(metadata) if metadata is not None else None)
    return atomic_write_bytes(path, data)


def load_tensors(path: str | os.PathLike[str], *, device: str = "cpu") -> dict[str, Tensor]:
    """Load a safetensors file written by :func:`save_tensors`.

    Args:
        path: the file.
        device: device to place the tensors on.

    Returns:
        Dict of names to tensors.

    Raises:
        ValidationError: if the file is missing or not a valid safetensors file.
    """
    st = require("safetensors.torch")
    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"path {str(path)!r} does not exist or is not a file")
    try:
        return st.load_file(path, device=device)
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise ValidationError(f"{str(path)!r} is not a readable safetensors file: {exc}") from exc


# --------------------------------------------------------------------------- model directories


@dataclass(frozen=True, kw_only=True)
class LoadedModel:
    """What :func:`load_model` returns.

    Attributes:
        model: the rebuilt model with its weights, in eval mode.
        extra: the ``extra`` dict given to :func:`save_model`.
        config: the whole ``config.json`` dict (``format``, ``model_class``,
            ``model_config``, ``extra``, ``tessera_version``).
    """

    model: nn.Module
    extra: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


def _rename_exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux ``renameat2(RENAME_EXCHANGE)``.

    Returns False (having changed nothing) where unsupported.
    """
    if not sys.platform.startswith("linux"):  # pragma: no cover
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):  # pragma: no cover - old glibc or musl
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # file system cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Move the finished directory ``tmp`` to ``target``, replacing any old one.

    Afterwards ``tmp`` no longer exists (the old checkpoint, if any, is deleted).
    """
    if not target.exists():
        os.rename(tmp, target)
        return
    if not target.is_dir():
        raise ValidationError(f"directory {str(target)!r} exists and is not a directory")
    if _rename_exchange(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old checkpoint
        return
    old = target.with_name(f".{target.name}.old-{secrets.token_hex(6)}")
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def save_model(
    directory: str | os.PathLike[str],
    model: nn.Module,
    *,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Save a registered model to a checkpoint directory, atomically.

    Writes ``model.safetensors`` (the state dict; tensors detached, contiguous, on
    CPU) and ``config.json`` (see the module docstring) into a temporary directory
    beside ``directory``, then swaps it into place. An existing checkpoint at
    ``directory`` is replaced only once the new one is complete; on any error it is
    left untouched and no temporary directory remains.

    Args:
        directory: the checkpoint directory (parents are created).
        model: an instance of a registered model class (``TimeMLP``, ``UNet``, or
            one added with :func:`register_model`) with a ``config`` attribute.
        extra: JSON-serialisable metadata stored as ``config.json["extra"]``.

    Returns:
        The checkpoint directory as a ``Path``.

    Raises:
        UnsupportedError: if the model's class is not registered.
        ValidationError: if ``extra`` is not JSON-serialisable or ``directory``
            exists and is not a directory.
        OSError: if the file system refuses the write.
    """
    import tessera

    st = require("safetensors.torch")
    name = _name_of(model)
    config_cls = _REGISTRY[name][1]
    config = getattr(model, "config", None)
    if not isinstance(config, config_cls):
        raise ValidationError(
            f"model.config must be a {config_cls.__name__}, got {type(config).__name__}"
        )
    payload = {
        "format": FORMAT,
        "model_class": name,
        "model_config": config.to_dict(),  # type: ignore[attr-defined]  # registered configs have to_dict
        "extra": dict(extra) if extra is not None else {},
        "tessera_version": tessera.__version__,
    }
    try:
        config_text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"extra must be JSON-serialisable (str, int, float, bool, None, lists and "
            f"dicts of them; no NaN): {exc}"
        ) from exc
    weights = st.save(_tensors_for_saving(model.state_dict(), "model.state_dict()"))

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValidationError(f"directory {str(directory)!r} exists and is not a directory")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.tmp-{secrets.token_hex(6)}")
    try:
        tmp.mkdir()
        _write_synced(tmp / WEIGHTS_FILE, weights)
        _write_synced(tmp / CONFIG_FILE, (config_text + "\n").encode("utf-8"))
        _fsync_dir(tmp)
        _swap_into_place(tmp, directory)
        _fsync_dir(directory.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _read_config(directory: Path) -> dict[str, Any]:
    cfg_path = directory / CONFIG_FILE
    if not cfg_path.is_file():
        raise ValidationError(
            f"{str(cfg_path)!r} is missing; {str(directory)!r} is not a tessera checkpoint "
            "(write one with tessera.nn.save_model)"
        )
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValidationError(f"{str(cfg_path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(cfg, dict):
        raise ValidationError(f"{str(cfg_path)!r} must hold a JSON object")
    if cfg.get("format") != FORMAT:
        raise UnsupportedError(
            f"{str(cfg_path)!r} has format {cfg.get('format')!r}; this tessera reads {FORMAT!r}"
        )
    for key, typ in (("model_class", str), ("model_config", dict), ("extra", dict)):
        if not isinstance(cfg.get(key), typ):
            raise ValidationError(
                f"{str(cfg_path)!r} needs key {key!r} of type {typ.__name__}, got {cfg.get(key)!r}"
            )
    return cfg


def load_model(
    directory: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> LoadedModel:
    """Load a checkpoint written by :func:`save_model`.

    Args:
        directory: the checkpoint directory.
        map_location: device to move the model to.

    Returns:
        A :class:`LoadedModel` with the model (in eval mode, on ``map_location``),
        the ``extra`` dict and the whole ``config.json`` dict.

    Raises:
        ValidationError: if the directory, ``config.json`` or ``model.safetensors``
            is missing or malformed, or the weights do not match the config.
        UnsupportedError: if the format is not ``"tessera.model/1"`` or the model
            class is not registered (the message lists the registered names).
    """
    st = require("safetensors.torch")
    directory = Path(directory)
    if not directory.is_dir():
        hint = ""
        leftovers = sorted(directory.parent.glob(f".{directory.name}.old-*"))
        if leftovers:
            hint = f"; an interrupted save left the previous checkpoint at {str(leftovers[0])!r}"
        raise ValidationError(f"checkpoint directory {str(directory)!r} does not exist{hint}")
    cfg = _read_config(directory)
    _ensure_builtins()
    name = cfg["model_class"]
    if name not in _REGISTRY:
        raise UnsupportedError(
            f"model_class {name!r} in {str(directory / CONFIG_FILE)!r} is not registered; "
            f"registered: {', '.join(sorted(_REGISTRY))} (see tessera.nn.register_model)"
        )
    model_cls, config_cls = _REGISTRY[name]
    config = config_cls.from_dict(cfg["model_config"])  # type: ignore[attr-defined]
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ValidationError(f"{str(weights_path)!r} is missing")
    try:
        state = st.load_file(weights_path, device="cpu")
    except Exception as exc:
        raise ValidationError(
            f"{str(weights_path)!r} is not a readable safetensors file: {exc}"
        ) from exc
    model = model_cls(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValidationError(
            f"weights in {str(weights_path)!r} do not match the {name} config: {exc}"
        ) from exc
    model = model.to(map_location).eval()
    return LoadedModel(model=model, extra=dict(cfg["extra"]), config=cfg)


_M = TypeVar("_M", bound=nn.Module)


def _load_as(
    cls: type[_M], directory: str | os.PathLike[str], *, map_location: str | torch.device
) -> _M:
    """Shared body of the models' ``from_pretrained``: load and check the class."""
    model = load_model(directory, map_location=map_location).model
    if not isinstance(model, cls):
        raise ValidationError(
            f"checkpoint {str(directory)!r} holds a {type(model).__name__}, not a "
            f"{cls.__name__}; load it with tessera.nn.load_model"
        )
    return model
