"""Tests for tessera.metrics.images: exact PSNR values, SSIM against scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from tessera.errors import NonFiniteError, ShapeError, ValidationError
from tessera.metrics import psnr, ssim


def _pair(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A reference in [-1, 1] and a noisy, correlated copy of it (float64)."""
    ref = rng.uniform(-1.0, 1.0, size=shape)
    return ref + 0.3 * rng.normal(size=shape), ref


# ---------------------------------------------------------------- psnr
def test_psnr_exact_values():
    ref = np.zeros((2, 3, 4, 4))
    x = ref.copy()
    x[0] += 0.02  # MSE 4e-4: 10 log10(4 / 4e-4) = 40 dB
    x[1] -= 0.2  # MSE 4e-2: 20 dB
    got = psnr(x, ref)
    assert type(got) is float
    assert got == pytest.approx(30.0, rel=1e-12)
    # data_range = 1 and a constant error of 0.1 give 10 log10(1 / 0.01) = 20 dB.
    assert psnr(np.full((1, 5), 0.1), np.zeros((1, 5)), data_range=1.0) == pytest.approx(20.0)


def test_psnr_matches_skimage_per_image_mean(seed):
    rng = np.random.default_rng(seed)
    x, ref = _pair(rng, (5, 8, 8))
    expected = np.mean(
        [peak_signal_noise_ratio(r, xi, data_range=2.0) for xi, r in zip(x, ref, strict=True)]
    )
    assert psnr(x, ref) == pytest.approx(expected, rel=1e-12)


def test_psnr_of_identical_images_is_inf():
    x = np.ones((2, 3, 3))
    assert psnr(x, x) == float("inf")


def test_psnr_accepts_torch(seed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    x, ref = _pair(rng, (3, 1, 6, 6))
    got = psnr(torch.tensor(x), torch.tensor(ref))
    assert got == pytest.approx(psnr(x, ref), rel=1e-12)


def test_psnr_bad_input():
    x = np.zeros((2, 4, 4))
    with pytest.raises(ShapeError, match=r"x and ref must have the same shape.*\(2, 4, 4\).*"):
        psnr(x, np.zeros((2, 4, 5)))
    with pytest.raises(ShapeError, match=r"x must be a batch.*got shape \(4,\)"):
        psnr(np.zeros(4), np.zeros(4))
    with pytest.raises(ShapeError, match=r"ref must be a batch.*B >= 1, got shape \(0, 4\)"):
        psnr(np.zeros((2, 4)), np.zeros((0, 4)))
    with pytest.raises(NonFiniteError, match="ref contains 1 NaN"):
        bad = x.copy()
        bad[1, 2, 3] = np.nan
        psnr(x, bad)
    with pytest.raises(ValidationError, match="data_range must be a finite number > 0, got 0"):
        psnr(x, x, data_range=0)


# ---------------------------------------------------------------- ssim
@pytest.mark.parametrize("size", [8, 28])
@pytest.mark.parametrize("win_size", [3, 7])
@pytest.mark.parametrize("data_range", [2.0, 1.0])
def test_ssim_matches_skimage(seed, size, win_size, data_range):
    # Reference: skimage.metrics.structural_similarity with its defaults (uniform window,
    # K1=0.01, K2=0.03, use_sample_covariance=True), one call per image, then the mean.
    rng = np.random.default_rng([seed, size, win_size])
    x, ref = _pair(rng, (4, size, size))
    expected = np.mean(
        [
            structural_similarity(xi, r, data_range=data_range, win_size=win_size)
            for xi, r in zip(x, ref, strict=True)
        ]
    )
    got = ssim(x, ref, data_range=data_range, win_size=win_size)
    assert type(got) is float
    assert got == pytest.approx(expected, rel=0, abs=1e-10)


def test_ssim_layouts_agree(seed):
    rng = np.random.default_rng(seed)
    x, ref = _pair(rng, (3, 8, 8))
    base = ssim(x, ref)
    assert ssim(x[:, None], ref[:, None]) == base
    assert ssim(x.reshape(3, 64), ref.reshape(3, 64), image_shape=(8, 8)) == base
    assert ssim(ref, x) == pytest.approx(base, abs=1e-15)  # SSIM is symmetric


def test_ssim_non_square_image_matches_skimage(seed):
    rng = np.random.default_rng(seed)
    x, ref = _pair(rng, (2, 9, 13))
    pairs = zip(x, ref, strict=True)
    expected = np.mean([structural_similarity(a, b, data_range=2.0) for a, b in pairs])
    assert ssim(x, ref) == pytest.approx(expected, rel=0, abs=1e-10)


def test_ssim_of_identical_images_is_one_and_accepts_torch(seed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(2, 8, 8))
    assert ssim(x, x) == 1.0
    assert ssim(torch.tensor(x, dtype=torch.float64), torch.tensor(x)) == 1.0
    assert ssim(x, x + 0.1 * rng.normal(size=x.shape)) < 1.0


def test_ssim_bad_input():
    x = np.zeros((2, 8, 8))
    with pytest.raises(ShapeError, match=r"same shape.*\(2, 8, 8\).*\(2, 8, 9\)"):
        ssim(x, np.zeros((2, 8, 9)))
    with pytest.raises(ShapeError, match=r"\(B, H, W\) or \(B, 1, H, W\).*got shape \(2, 64\)"):
        ssim(x.reshape(2, 64), x.reshape(2, 64))
    with pytest.raises(ShapeError, match=r"grayscale.*got shape \(2, 3, 8, 8\)"):
        ssim(np.zeros((2, 3, 8, 8)), np.zeros((2, 3, 8, 8)))
    with pytest.raises(ShapeError, match=r"image_shape=\(7, 7\).*\(B, 49\), got shape \(2, 64\)"):
        ssim(x.reshape(2, 64), x.reshape(2, 64), image_shape=(7, 7))
    with pytest.raises(ValidationError, match="win_size must be odd, got 6"):
        ssim(x, x, win_size=6)
    with pytest.raises(ValidationError, match="win_size must be an integer >= 3, got 1"):
        ssim(x, x, win_size=1)
    with pytest.raises(ValidationError, match=r"win_size=9 exceeds the image size 8x8"):
        ssim(x, x, win_size=9)
    with pytest.raises(ValidationError, match="data_range must be a finite number > 0"):
        ssim(x, x, data_range=-2.0)
    with pytest.raises(NonFiniteError, match="x contains 1 NaN"):
        bad = x.copy()
        bad[0, 0, 0] = np.inf
        ssim(bad, x)
