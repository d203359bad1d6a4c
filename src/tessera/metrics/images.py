"""Full-reference image quality: PSNR and SSIM, averaged over a batch.

Images come batch first, as NumPy arrays or torch tensors (converted by duck
typing; this module never imports torch). tessera images live in [-1, 1], hence
the default ``data_range=2.0``. Everything is computed in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter

from tessera._validate import check_finite, check_positive, check_positive_int
from tessera.errors import ShapeError, ValidationError
from tessera.metrics.distances import _to_numpy

__all__ = ["psnr", "ssim"]

# Constants of Wang et al. (2004), as in skimage.metrics.structural_similarity.
_K1 = 0.01
_K2 = 0.03


def _same_shape_batch(x: Any, ref: Any, *, min_ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """Convert both inputs and check they share one batch-first shape with B >= 1."""
    xa = _to_numpy("x", x)
    ra = _to_numpy("ref", ref)
    for name, arr in (("x", xa), ("ref", ra)):
        if arr.ndim < min_ndim or arr.shape[0] < 1:
            raise ShapeError(
                f"{name} must be a batch, batch first, with at least {min_ndim} dimensions and "
                f"B >= 1, got shape {arr.shape}; add a batch axis with {name}[None]"
            )
    if xa.shape != ra.shape:
        raise ShapeError(
            f"x and ref must have the same shape, got x of shape {xa.shape} and ref of shape "
            f"{ra.shape}"
        )
    check_finite("x", xa)
    check_finite("ref", ra)
    return xa, ra


def psnr(x: Any, ref: Any, *, data_range: float = 2.0) -> float:
    r"""Peak signal-to-noise ratio in dB, per image and averaged over the batch.

    Args:
        x: array of shape (B, ...), e.g. (B, H, W), (B, C, H, W) or flat (B, P);
            finite.
        ref: reference images, same shape as ``x``.
        data_range: peak-to-peak range of the pixel values (2.0 for [-1, 1]).

    Returns:
        :math:`\frac1B \sum_b 10 \log_{10}(R^2 / \mathrm{MSE}_b)` with the MSE
        of image ``b`` taken over all its non-batch entries. It is ``inf`` when
        some image equals its reference exactly.

    Raises:
        ShapeError: if an input has fewer than 2 dimensions or the shapes differ.
        NonFiniteError: if an input holds NaN or infinity.
        ValidationError: if ``data_range`` is not a finite positive number.

    Example:
        >>> import numpy as np
        >>> ref = np.zeros((1, 4, 4))
        >>> psnr(ref + 0.02, ref)  # 10 log10(2^2 / 0.02^2) = 40 dB
        40.0
    """
    check_positive("data_range", data_range)
    xa, ra = _same_shape_batch(x, ref, min_ndim=2)
    B = xa.shape[0]
    mse = ((xa - ra) ** 2).reshape(B, -1).mean(axis=1)  # (B,)
    with np.errstate(divide="ignore"):
        per_image = 10.0 * np.log10(float(data_range) ** 2 / mse)  # (B,)
    return float(per_image.mean())


def ssim(
    x: Any,
    ref: Any,
    *,
    data_range: float = 2.0,
    win_size: int = 7,
    image_shape: tuple[int, int] | None = None,
) -> float:
    r"""Mean structural similarity (SSIM) of grayscale images, averaged over the batch.

    Per image this equals ``skimage.metrics.structural_similarity(x_b, ref_b,
    data_range=data_range, win_size=win_size)`` with its defaults: a uniform
    ``win_size`` x ``win_size`` window (``scipy.ndimage.uniform_filter``, reflect
    boundary), K1 = 0.01, K2 = 0.03, sample (co)variances scaled by
    N / (N - 1) with N = ``win_size**2``, and the SSIM map averaged over the
    valid region, i.e. cropped by ``(win_size - 1) // 2`` on every side.

    Args:
        x: array of shape (B, H, W) or (B, 1, H, W), or flat (B, H*W) together
            with ``image_shape=(H, W)``; finite.
        ref: reference images, same shape as ``x``.
        data_range: peak-to-peak range of the pixel values (2.0 for [-1, 1]).
        win_size: odd side length of the window, 3 <= win_size <= min(H, W).
        image_shape: ``(H, W)`` used to reshape flat (B, P) inputs; ``None`` for
            inputs that are already images.

    Returns:
        :math:`\frac1B \sum_b \mathrm{mean}_{p}
        \frac{(2 \mu_x \mu_y + C_1)(2 \sigma_{xy} + C_2)}
        {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)}` with
        :math:`C_1 = (K_1 R)^2`, :math:`C_2 = (K_2 R)^2`, local statistics over
        the window at each valid pixel p.

    Raises:
        ShapeError: if the shapes differ, are not one of the layouts above, have
            more than one channel, or do not match ``image_shape``.
        NonFiniteError: if an input holds NaN or infinity.
        ValidationError: if ``data_range`` is not a finite positive number or
            ``win_size`` is not an odd integer in [3, min(H, W)].

    Notes:
        Wang, Bovik, Sheikh and Simoncelli, "Image quality assessment: from error
        visibility to structural similarity", IEEE TIP 2004.

    Example:
        >>> import numpy as np
        >>> x = np.linspace(-1.0, 1.0, 64).reshape(1, 8, 8)
        >>> ssim(x, x)
        1.0
    """
    check_positive("data_range", data_range)
    check_positive_int("win_size", win_size, minimum=3)
    if win_size % 2 != 1:
        raise ValidationError(f"win_size must be odd, got {win_size}; pass e.g. {win_size + 1}")
    xa, ra = _same_shape_batch(x, ref, min_ndim=2)
    if image_shape is not None:
        H, W = (int(s) for s in image_shape)
        if xa.ndim != 2 or xa.shape[1] != H * W:
            raise ShapeError(
                f"with image_shape={tuple(image_shape)} x must be flat of shape (B, {H * W}), "
                f"got shape {xa.shape}; drop image_shape for inputs that are already images"
            )
        xa = xa.reshape(-1, H, W)  # (B, H, W)
        ra = ra.reshape(-1, H, W)  # (B, H, W)
    elif xa.ndim == 4 and xa.shape[1] == 1:
        xa, ra = xa[:, 0], ra[:, 0]  # (B, H, W)
    elif xa.ndim != 3:
        raise ShapeError(
            f"x must have shape (B, H, W) or (B, 1, H, W) (grayscale), got shape {xa.shape}; "
            "pass image_shape=(H, W) for flat (B, H*W) images, and compute colour images one "
            "channel at a time"
        )
    H, W = xa.shape[1:]
    if win_size > min(H, W):
        raise ValidationError(
            f"win_size={win_size} exceeds the image size {H}x{W}; pass an odd win_size "
            f"<= {min(H, W)}"
        )

    size = (1, win_size, win_size)  # no filtering across the batch axis
    n_pix = win_size * win_size
    cov_norm = n_pix / (n_pix - 1)  # sample (co)variance

    ux = uniform_filter(xa, size=size)  # (B, H, W)
    uy = uniform_filter(ra, size=size)
    uxx = uniform_filter(xa * xa, size=size)
    uyy = uniform_filter(ra * ra, size=size)
    uxy = uniform_filter(xa * ra, size=size)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)

    R = float(data_range)
    C1 = (_K1 * R) ** 2
    C2 = (_K2 * R) ** 2
    A1 = 2 * ux * uy + C1
    A2 = 2 * vxy + C2
    B1 = ux**2 + uy**2 + C1
    B2 = vx + vy + C2
    S = (A1 * A2) / (B1 * B2)  # (B, H, W)

    pad = (win_size - 1) // 2
    valid = S[:, pad : H - pad, pad : W - pad]  # (B, H - 2 pad, W - 2 pad)
    return float(valid.mean(axis=(1, 2), dtype=np.float64).mean())
