from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tessera.data import ImageDataset, digits, mnist5k
from tessera.errors import ShapeError, UnsupportedError, ValidationError


def _check_stratified(ds: ImageDataset, test_size: float) -> None:
    """Every class's share of the test split is within 1 image of test_size."""
    total = np.bincount(np.concatenate([ds.train_y, ds.test_y]), minlength=ds.num_classes)
    test = np.bincount(ds.test_y, minlength=ds.num_classes)
    assert np.all(np.abs(test - test_size * total) <= 1.0)


def test_digits_layout(seed: int) -> None:
    ds = digits(seed=seed)
    assert ds.name == "digits"
    assert ds.image_shape == (8, 8) and ds.num_classes == 10
    assert ds.train_x.shape == (1437, 64) and ds.test_x.shape == (360, 64)
    assert ds.train_y.shape == (1437,) and ds.test_y.shape == (360,)
    assert ds.train_x.dtype == np.float32 and ds.test_x.dtype == np.float32
    assert ds.train_y.dtype == np.int64 and ds.test_y.dtype == np.int64
    assert ds.images("train").shape == (1437, 1, 8, 8)
    assert ds.images("test").shape == (360, 1, 8, 8)
    np.testing.assert_array_equal(ds.images("test")[:, 0].reshape(360, 64), ds.test_x)
    x = np.concatenate([ds.train_x, ds.test_x])
    assert x.min() == -1.0 and x.max() == 1.0
    # x = v/8 - 1 for integer v in 0..16: (x + 1) * 8 is an exact integer in float32
    v = (x + 1.0) * 8.0
    np.testing.assert_array_equal(v, np.round(v))
    assert set(np.unique(np.concatenate([ds.train_y, ds.test_y]))) == set(range(10))
    _check_stratified(ds, 0.2)


def test_digits_is_a_permutation_of_sklearn_digits() -> None:
    from sklearn.datasets import load_digits

    ref = load_digits()
    ds = digits()
    got = np.concatenate(
        [np.column_stack([ds.train_x, ds.train_y]), np.column_stack([ds.test_x, ds.test_y])]
    )
    want = np.column_stack([ref.data / 8.0 - 1.0, ref.target]).astype(np.float32)
    order = np.lexsort(got.T[::-1])
    order_ref = np.lexsort(want.T[::-1])
    np.testing.assert_array_equal(got[order], want[order_ref])


def test_mnist5k_layout() -> None:
    ds = mnist5k()
    assert ds.name == "mnist5k" and ds.image_shape == (28, 28)
    assert ds.train_x.shape == (4000, 784) and ds.test_x.shape == (1000, 784)
    assert ds.train_x.dtype == np.float32 and ds.train_y.dtype == np.int64
    assert ds.images().shape == (4000, 1, 28, 28)
    assert ds.train_x.min() == -1.0 and ds.train_x.max() == 1.0
    # 500 images per class, so an exact 100/400 split per class
    np.testing.assert_array_equal(np.bincount(ds.test_y), np.full(10, 100))
    np.testing.assert_array_equal(np.bincount(ds.train_y), np.full(10, 400))


@pytest.mark.parametrize("test_size", [0.1, 0.33, 0.5])
def test_stratification_other_sizes(test_size: float, seed: int) -> None:
    ds = digits(test_size=test_size, seed=seed)
    assert len(ds.test_y) == int(np.ceil(test_size * 1797))
    _check_stratified(ds, test_size)


def test_same_seed_same_split_other_seed_other_split(seed: int) -> None:
    a, b, c = digits(seed=seed), digits(seed=seed), digits(seed=seed + 1)
    np.testing.assert_array_equal(a.train_x, b.train_x)
    assert not np.array_equal(a.train_x, c.train_x)


def test_cached_and_read_only() -> None:
    ds = digits()
    assert digits(test_size=0.2, seed=0) is ds
    for arr in (ds.train_x, ds.train_y, ds.test_x, ds.test_y, ds.images("train")):
        assert not arr.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 0
    ds2 = mnist5k()
    assert not ds2.train_x.flags.writeable and not ds2.test_y.flags.writeable


@pytest.mark.parametrize("test_size", [0, 0.0, 1.0, 1.5, -0.1, "0.2", True, None, 0.001])
def test_bad_test_size(test_size: object) -> None:
    with pytest.raises(ValidationError, match="test_size"):
        digits(test_size=test_size)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad_seed", [-1, 1.5, "0"])
def test_bad_seed(bad_seed: object) -> None:
    with pytest.raises(ValidationError, match="seed"):
        digits(seed=bad_seed)  # type: ignore[arg-type]


def test_bad_split_name() -> None:
    with pytest.raises(UnsupportedError, match="split"):
        digits().images("val")  # type: ignore[arg-type]


def test_dataset_validates_shapes() -> None:
    x = np.zeros((4, 64), np.float32)
    y = np.zeros(4, np.int64)
    ImageDataset(name="ok", train_x=x, train_y=y, test_x=x, test_y=y, image_shape=(8, 8))
    with pytest.raises(ShapeError, match="train_x"):
        ImageDataset(name="b", train_x=x, train_y=y, test_x=x, test_y=y, image_shape=(4, 4))
    with pytest.raises(ShapeError, match="test_y"):
        ImageDataset(name="b", train_x=x, train_y=y, test_x=x, test_y=y[:3], image_shape=(8, 8))
    with pytest.raises(ValidationError, match="float32"):
        ImageDataset(
            name="b",
            train_x=x.astype(np.float64),
            train_y=y,
            test_x=x,
            test_y=y,
            image_shape=(8, 8),
        )


def test_data_does_not_import_torch() -> None:
    code = (
        "import sys, tessera.data as d; d.toy2d('moons', 5, rng=0); d.digits(); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_every_public_name_is_documented() -> None:
    import inspect

    import tessera.data as tdata

    missing = []
    for name in tdata.__all__:
        obj = getattr(tdata, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            if not (obj.__doc__ or "").strip():
                missing.append(name)
            for attr, member in vars(obj).items() if inspect.isclass(obj) else ():
                if not attr.startswith("_") and inspect.isfunction(member) and not member.__doc__:
                    missing.append(f"{name}.{attr}")
    assert missing == []
