from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import tessera
import tessera.nn.checkpoint as ckpt
from tessera.errors import UnsupportedError, ValidationError
from tessera.nn import (
    TimeMLP,
    TimeMLPConfig,
    UNet,
    UNetConfig,
    atomic_write_bytes,
    atomic_write_text,
    load_model,
    load_tensors,
    register_model,
    save_model,
    save_tensors,
)


def _mlp(seed: int, **kw: Any) -> TimeMLP:
    torch.manual_seed(seed)
    return TimeMLP(TimeMLPConfig(dim=3, hidden=16, depth=2, **kw))


def _unet(seed: int) -> UNet:
    torch.manual_seed(seed)
    return UNet(UNetConfig(image_size=8, base_channels=8, time_dim=16, num_classes=10))


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# --------------------------------------------------------------------------- round trips


def test_round_trip_time_mlp(tmp_path: Path, seed: int) -> None:
    model = _mlp(seed, num_classes=4)
    out = save_model(tmp_path / "ck", model, extra={"step": 12, "note": "hi"})
    assert out == tmp_path / "ck"
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_model(out)
    assert isinstance(loaded.model, TimeMLP) and not loaded.model.training
    assert loaded.model.config == model.config
    assert loaded.extra == {"step": 12, "note": "hi"}
    assert loaded.config["format"] == "tessera.model/1"
    assert loaded.config["model_class"] == "TimeMLP"
    assert loaded.config["tessera_version"] == tessera.__version__
    assert loaded.config["model_config"] == model.config.to_dict()
    _assert_same_weights(model, loaded.model)
    g = torch.Generator().manual_seed(seed)
    x, t, y = torch.randn(6, 3, generator=g), torch.rand(6, generator=g), torch.arange(6) % 5
    assert torch.equal(model(x, t, y=y), loaded.model(x, t, y=y))


def test_round_trip_unet_and_from_pretrained(tmp_path: Path, seed: int) -> None:
    model = _unet(seed)
    save_model(tmp_path / "u", model)
    loaded = UNet.from_pretrained(tmp_path / "u")
    _assert_same_weights(model, loaded)
    g = torch.Generator().manual_seed(seed)
    x, t = torch.randn(2, 1, 8, 8, generator=g), torch.rand(2, generator=g)
    assert torch.equal(model(x, t, y=torch.tensor([1, 10])), loaded(x, t, y=torch.tensor([1, 10])))
    assert load_model(tmp_path / "u").extra == {}
    with pytest.raises(ValidationError, match="holds a UNet, not a TimeMLP"):
        TimeMLP.from_pretrained(tmp_path / "u")


def test_overwrite_replaces_and_leaves_nothing_behind(tmp_path: Path, seed: int) -> None:
    target = tmp_path / "ck"
    save_model(target, _mlp(seed), extra={"v": 1})
    second = _mlp(seed + 1)
    save_model(target, second, extra={"v": 2})
    loaded = load_model(target)
    assert loaded.extra == {"v": 2}
    _assert_same_weights(second, loaded.model)
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


def test_overwrite_without_rename_exchange(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The portable fallback (two renames) must behave the same as the atomic exchange.
    monkeypatch.setattr(ckpt, "_rename_exchange", lambda a, b: False)
    target = tmp_path / "ck"
    save_model(target, _mlp(seed), extra={"v": 1})
    save_model(target, _mlp(seed + 1), extra={"v": 2})
    assert load_model(target).extra == {"v": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


# --------------------------------------------------------------------------- atomicity


def _fail_on_call(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, n: int) -> None:
    """Make ``module.name`` raise OSError on its n-th call (1-based)."""
    real = getattr(module, name)
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == n:
            raise OSError("injected failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, flaky)


@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_failed_save_keeps_previous_checkpoint(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch, fail_at: int
) -> None:
    # fsync calls in save_model: 1 = weights file, 2 = config.json, 3 = temp directory.
    target = tmp_path / "ck"
    save_model(target, _mlp(seed), extra={"v": 1})
    before = _snapshot(target)
    _fail_on_call(monkeypatch, os, "fsync", fail_at)
    with pytest.raises(OSError, match="injected"):
        save_model(target, _mlp(seed + 1), extra={"v": 2})
    monkeypatch.undo()
    assert _snapshot(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]
    assert load_model(target).extra == {"v": 1}


@pytest.mark.parametrize("fail_at", [1, 2])
def test_failed_swap_keeps_previous_checkpoint(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch, fail_at: int
) -> None:
    # Fallback swap: rename 1 moves the old checkpoint aside, rename 2 moves the new
    # one in. A failure at either point must restore the old checkpoint.
    target = tmp_path / "ck"
    save_model(target, _mlp(seed), extra={"v": 1})
    before = _snapshot(target)
    monkeypatch.setattr(ckpt, "_rename_exchange", lambda a, b: False)
    _fail_on_call(monkeypatch, os, "rename", fail_at)
    with pytest.raises(OSError, match="injected"):
        save_model(target, _mlp(seed + 1), extra={"v": 2})
    monkeypatch.undo()
    assert _snapshot(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


def test_failed_first_save_leaves_nothing(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail_on_call(monkeypatch, os, "fsync", 2)
    with pytest.raises(OSError, match="injected"):
        save_model(tmp_path / "ck", _mlp(seed))
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_failure_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = atomic_write_text(tmp_path / "sub" / "a.txt", "old")  # creates the parent
    assert p.read_text() == "old"
    _fail_on_call(monkeypatch, os, "replace", 1)
    with pytest.raises(OSError, match="injected"):
        atomic_write_text(p, "new")
    monkeypatch.undo()
    assert p.read_text() == "old"
    assert [q.name for q in p.parent.iterdir()] == ["a.txt"]
    atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"new"
    assert [q.name for q in p.parent.iterdir()] == ["a.txt"]


def test_atomic_write_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="is a directory"):
        atomic_write_bytes(tmp_path, b"x")
    with pytest.raises(ValidationError, match="data must be bytes"):
        atomic_write_bytes(tmp_path / "a", "text")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="text must be a str"):
        atomic_write_text(tmp_path / "a", b"bytes")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- tensors


def test_save_load_tensors(tmp_path: Path, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(4, 6, generator=g)
    tensors = {
        "a": base,
        "view_t": base.t(),  # non-contiguous view sharing storage with "a"
        "step": torch.tensor(17, dtype=torch.int64),
        "rng": torch.randint(0, 255, (32,), dtype=torch.uint8, generator=g),
    }
    path = save_tensors(tmp_path / "state.safetensors", tensors, metadata={"kind": "optim"})
    back = load_tensors(path)
    assert back.keys() == tensors.keys()
    for k, v in tensors.items():
        assert torch.equal(back[k], v) and back[k].dtype == v.dtype, k
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"kind": "optim"}
    assert [p.name for p in tmp_path.iterdir()] == ["state.safetensors"]


def test_tensors_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="must be a Tensor"):
        save_tensors(tmp_path / "s", {"a": [1, 2]})  # type: ignore[dict-item]
    with pytest.raises(ValidationError, match="keys must be strings"):
        save_tensors(tmp_path / "s", {1: torch.zeros(1)})  # type: ignore[dict-item]
    with pytest.raises(ValidationError, match="metadata"):
        save_tensors(tmp_path / "s", {"a": torch.zeros(1)}, metadata={"step": 3})  # type: ignore[dict-item]
    with pytest.raises(ValidationError, match="does not exist"):
        load_tensors(tmp_path / "missing.safetensors")
    (tmp_path / "junk").write_bytes(b"not a safetensors file")
    with pytest.raises(ValidationError, match="junk"):
        load_tensors(tmp_path / "junk")


# --------------------------------------------------------------------------- load errors


def test_load_missing_directory_names_path(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="nope"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValidationError, match=r"config\.json"):
        load_model(tmp_path / "empty")


def _edit_config(directory: Path, **changes: Any) -> None:
    cfg = json.loads((directory / "config.json").read_text())
    cfg.update(changes)
    (directory / "config.json").write_text(json.dumps(cfg))


def test_load_wrong_format_or_class(tmp_path: Path, seed: int) -> None:
    d = save_model(tmp_path / "ck", _mlp(seed))
    _edit_config(d, format="tessera.model/99")
    with pytest.raises(UnsupportedError, match=r"tessera\.model/99"):
        load_model(d)
    _edit_config(d, format="tessera.model/1", model_class="Transformer")
    with pytest.raises(UnsupportedError, match=r"Transformer.*TimeMLP, UNet"):
        load_model(d)
    _edit_config(d, model_class="TimeMLP", model_config={"dim": 3, "hidden": 99, "depth": 2})
    with pytest.raises(ValidationError, match="do not match"):
        load_model(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(ValidationError, match="not valid JSON"):
        load_model(d)


def test_load_missing_or_corrupt_weights(tmp_path: Path, seed: int) -> None:
    d = save_model(tmp_path / "ck", _mlp(seed))
    (d / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ValidationError, match=r"model\.safetensors"):
        load_model(d)
    (d / "model.safetensors").unlink()
    with pytest.raises(ValidationError, match=r"model\.safetensors.*missing"):
        load_model(d)


def test_save_rejects_bad_extra_and_unregistered_models(tmp_path: Path, seed: int) -> None:
    with pytest.raises(ValidationError, match="JSON"):
        save_model(tmp_path / "ck", _mlp(seed), extra={"t": torch.zeros(1)})
    with pytest.raises(ValidationError, match="JSON"):
        save_model(tmp_path / "ck", _mlp(seed), extra={"x": float("nan")})
    with pytest.raises(UnsupportedError, match="register_model"):
        save_model(tmp_path / "ck", nn.Linear(2, 2))
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValidationError, match="not a directory"):
        save_model(tmp_path / "file", _mlp(seed))


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True, kw_only=True)
class _AffineConfig:
    dim: int

    def to_dict(self) -> dict[str, Any]:
        return {"dim": self.dim}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _AffineConfig:
        return cls(**d)


class _Affine(nn.Module):
    def __init__(self, config: _AffineConfig) -> None:
        super().__init__()
        self.config = config
        self.lin = nn.Linear(config.dim, config.dim)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, *, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.lin(x) * t[:, None]


def test_register_custom_model(tmp_path: Path, seed: int) -> None:
    register_model("TestAffine", _Affine, _AffineConfig)
    register_model("TestAffine", _Affine, _AffineConfig)  # idempotent
    torch.manual_seed(seed)
    model = _Affine(_AffineConfig(dim=2))
    loaded = load_model(save_model(tmp_path / "a", model)).model
    _assert_same_weights(model, loaded)
    with pytest.raises(ValidationError, match="already registered"):
        register_model("TestAffine", TimeMLP, TimeMLPConfig)
    with pytest.raises(ValidationError, match=r"nn\.Module"):
        register_model("X", dict, _AffineConfig)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="from_dict"):
        register_model("X", _Affine, dict)


# --------------------------------------------------------------------------- public API


def test_every_public_name_is_documented() -> None:
    import inspect

    import tessera.nn as tnn

    missing = []
    for name in tnn.__all__:
        obj = getattr(tnn, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not (obj.__doc__ or "").strip():
            missing.append(name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                fn = getattr(member, "__func__", None) or getattr(member, "fget", None) or member
                if callable(fn) and not (fn.__doc__ or "").strip():
                    missing.append(f"{name}.{attr}")
    assert missing == []
