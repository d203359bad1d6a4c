r"""Linear measurement operators :math:`y = A x` with their adjoints and structured solves.

Every operator acts on a batch ``x`` of shape (B, D) (flat) or (B, *shape) with
``prod(shape) == D``; measurements are flat, (B, m). Besides ``forward`` and
``adjoint`` each provides

.. math:: \text{solve\_normal}(v, r^2, \sigma_y^2) = (r^2 A A^T + \sigma_y^2 I)^{-1} v,

the linear solve of the PiGDM / OT-ODE guidance, done with the operator's structure:
diagonal for inpainting, super-resolution and denoising, FFT for circular blur,
batched conjugate gradients for a generic dense matrix.

Example:
    >>> import torch
    >>> op = Inpaint(torch.tensor([True, False, True]))
    >>> op.forward(torch.tensor([[1.0, 2.0, 3.0]])).tolist()
    [[1.0, 3.0]]
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor

from tessera._validate import check_finite, check_positive, check_positive_int
from tessera.errors import ShapeError, ValidationError

__all__ = ["Denoise", "Dense", "GaussianBlur", "Inpaint", "LinearOperator", "SuperResolution"]


class LinearOperator(ABC):
    """A linear map from signals of dimension D to measurements of dimension m."""

    in_dim: int
    out_dim: int

    def _flat(self, x: Tensor, name: str = "x") -> Tensor:
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.in_dim:
            raise ShapeError(
                f"{name} must have shape (B, {self.in_dim}) or (B, ...) with {self.in_dim} "
                f"entries per sample for {type(self).__name__}, got {tuple(x.shape)}"
            )
        return x.reshape(x.shape[0], self.in_dim)

    def _meas(self, y: Tensor, name: str = "y") -> Tensor:
        if y.ndim != 2 or y.shape[1] != self.out_dim:
            raise ShapeError(
                f"{name} must have shape (B, {self.out_dim}) for {type(self).__name__}, "
                f"got {tuple(y.shape)}"
            )
        return y

    def forward(self, x: Tensor) -> Tensor:
        """Apply A.

        Args:
            x: shape (B, D) or (B, *shape) with D entries per sample.

        Returns:
            Measurements, shape (B, m).

        Raises:
            ShapeError: if x does not hold D entries per sample.
        """
        return self._forward(self._flat(x))

    def adjoint(self, y: Tensor) -> Tensor:
        """Apply A^T.

        Args:
            y: shape (B, m).

        Returns:
            Tensor of shape (B, D).

        Raises:
            ShapeError: if y is not (B, m).
        """
        return self._adjoint(self._meas(y))

    def solve_normal(self, v: Tensor, r2: Tensor | float, sigma_y2: float) -> Tensor:
        """Solve (r2 A A^T + sigma_y2 I) u = v.

        Args:
            v: shape (B, m).
            r2: scalar or shape (B,), >= 0.
            sigma_y2: measurement noise variance, >= 0 (r2 and sigma_y2 not both 0).

        Returns:
            u, shape (B, m).

        Raises:
            ShapeError: if v is not (B, m).
            ValidationError: negative variances.
        """
        v = self._meas(v, "v")
        check_positive("sigma_y2", float(sigma_y2), allow_zero=True)
        r2t = torch.as_tensor(r2, dtype=v.dtype, device=v.device)
        if bool((r2t < 0).any()):
            raise ValidationError(f"r2 must be >= 0, got {r2t.min().item()}")
        r2t = r2t.expand(v.shape[0]) if r2t.ndim == 0 else r2t
        return self._solve_normal(v, r2t[:, None], float(sigma_y2))

    def back_project(self, y: Tensor, sigma_y2: float = 1e-4) -> Tensor:
        """Regularised pseudo-inverse A^T (A A^T + sigma_y2 I)^{-1} y (the baseline reconstruction).

        Args:
            y: shape (B, m).
            sigma_y2: Tikhonov regulariser (the noise variance is a natural choice).

        Returns:
            Tensor of shape (B, D).
        """
        return self.adjoint(self.solve_normal(y, 1.0, sigma_y2))

    @abstractmethod
    def _forward(self, x: Tensor) -> Tensor: ...

    @abstractmethod
    def _adjoint(self, y: Tensor) -> Tensor: ...

    @abstractmethod
    def _solve_normal(self, v: Tensor, r2: Tensor, sigma_y2: float) -> Tensor: ...


class Inpaint(LinearOperator):
    """Keep the pixels where ``mask`` is True (A A^T = I).

    Args:
        mask: bool tensor with the per-sample shape of x (e.g. (64,) or (8, 8)).

    Raises:
        ValidationError: if the mask keeps no pixel.
    """

    def __init__(self, mask: Tensor) -> None:
        m = torch.as_tensor(mask).bool().reshape(-1)
        if not bool(m.any()):
            raise ValidationError("mask must keep at least one pixel (all entries are False)")
        self.mask = m
        self.in_dim = int(m.numel())
        self.out_dim = int(m.sum())

    def _forward(self, x: Tensor) -> Tensor:
        return x[:, self.mask.to(x.device)]

    def _adjoint(self, y: Tensor) -> Tensor:
        out = y.new_zeros(y.shape[0], self.in_dim)
        out[:, self.mask.to(y.device)] = y
        return out

    def _solve_normal(self, v: Tensor, r2: Tensor, sigma_y2: float) -> Tensor:
        return v / (r2 + sigma_y2)


class Denoise(LinearOperator):
    """The identity (A = I): denoising.

    Args:
        dim: signal dimension D, or None to accept any D.
    """

    def __init__(self, dim: int | None = None) -> None:
        if dim is not None:
            check_positive_int("dim", dim)
        self.dim = dim

    @property
    def in_dim(self) -> int:  # type: ignore[override]
        """Signal dimension (-1 when any D is accepted)."""
        return self.dim if self.dim is not None else -1

    @property
    def out_dim(self) -> int:  # type: ignore[override]
        """Measurement dimension (= D)."""
        return self.in_dim

    def _flat(self, x: Tensor, name: str = "x") -> Tensor:
        if self.dim is None:
            if x.ndim < 2:
                raise ShapeError(f"{name} must have shape (B, ...), got {tuple(x.shape)}")
            return x.reshape(x.shape[0], -1)
        return super()._flat(x, name)

    def _meas(self, y: Tensor, name: str = "y") -> Tensor:
        return self._flat(y, name)

    def _forward(self, x: Tensor) -> Tensor:
        return x

    def _adjoint(self, y: Tensor) -> Tensor:
        return y

    def _solve_normal(self, v: Tensor, r2: Tensor, sigma_y2: float) -> Tensor:
        return v / (r2 + sigma_y2)


class SuperResolution(LinearOperator):
    """Average pooling over ``factor x factor`` blocks (A A^T = I / factor^2).

    Args:
        factor: pooling factor (divides both image sides).
        image_shape: (H, W) of one image.

    Raises:
        ValidationError: if factor does not divide H and W.
    """

    def __init__(self, factor: int, image_shape: Sequence[int]) -> None:
        check_positive_int("factor", factor)
        h, w = (int(s) for s in image_shape)
        if h % factor or w % factor:
            raise ValidationError(f"factor {factor} must divide the image shape {(h, w)}")
        self.factor, self.shape = int(factor), (h, w)
        self.in_dim = h * w
        self.out_dim = (h // factor) * (w // factor)

    def _forward(self, x: Tensor) -> Tensor:
        B, (h, w), f = x.shape[0], self.shape, self.factor
        blocks = x.reshape(B, h // f, f, w // f, f)  # (B, h/f, f, w/f, f)
        return blocks.mean(dim=(2, 4)).reshape(B, self.out_dim)

    def _adjoint(self, y: Tensor) -> Tensor:
        B, (h, w), f = y.shape[0], self.shape, self.factor
        low = y.reshape(B, h // f, 1, w // f, 1) / (f * f)
        return low.expand(B, h // f, f, w // f, f).reshape(B, self.in_dim)

    def _solve_normal(self, v: Tensor, r2: Tensor, sigma_y2: float) -> Tensor:
        return v / (r2 / self.factor**2 + sigma_y2)


class GaussianBlur(LinearOperator):
    """Circular convolution with a normalised Gaussian kernel, applied by FFT.

    Args:
        kernel_size: odd kernel side.
        sigma: Gaussian standard deviation in pixels (> 0).
        image_shape: (H, W) of one image.

    Raises:
        ValidationError: for an even or too large kernel, or sigma <= 0.
    """

    def __init__(self, kernel_size: int, sigma: float, image_shape: Sequence[int]) -> None:
        check_positive_int("kernel_size", kernel_size)
        check_positive("sigma", sigma)
        h, w = (int(s) for s in image_shape)
        if kernel_size % 2 == 0 or kernel_size > min(h, w):
            raise ValidationError(f"kernel_size must be odd and <= {min(h, w)}, got {kernel_size}")
        r = kernel_size // 2
        ax = torch.arange(-r, r + 1, dtype=torch.float64)
        g = torch.exp(-(ax**2) / (2 * sigma**2))
        k2 = torch.outer(g, g)
        k2 = k2 / k2.sum()
        kernel = torch.zeros(h, w, dtype=torch.float64)
        for i in range(-r, r + 1):
            for j in range(-r, r + 1):
                kernel[i % h, j % w] = k2[i + r, j + r]
        self.shape = (h, w)
        self.kernel = kernel
        self._fk = torch.fft.fft2(kernel)  # (H, W) complex128
        self.in_dim = self.out_dim = h * w

    def _apply(self, x: Tensor, conj: bool) -> Tensor:
        B, (h, w) = x.shape[0], self.shape
        fk = self._fk.to(x.device)
        fk = fk.conj() if conj else fk
        fx = torch.fft.fft2(x.reshape(B, h, w).to(torch.float64))
        return torch.fft.ifft2(fx * fk).real.to(x.dtype).reshape(B, self.in_dim)

    def _forward(self, x: Tensor) -> Tensor:
        return self._apply(x, conj=False)

    def _adjoint(self, y: Tensor) -> Tensor:
        return self._apply(y, conj=True)

    def _solve_normal(self, v: Tensor, r2: Tensor, sigma_y2: float) -> Tensor:
        B, (h, w) = v.shape[0], self.shape
        denom = r2.to(torch.float64)[:, :, None] * self._fk.abs().to(v.device) ** 2 + sigma_y2
        fv = torch.fft.fft2(v.reshape(B, h, w).to(torch.float64))
        return torch.fft.ifft2(fv / denom).real.to(v.dtype).reshape(B, self.out_dim)


class Dense(LinearOperator):
    """A generic matrix A of shape (m, D); normal solves by batched conjugate gradients.

    Args:
        matrix: shape (m, D), finite.
        cg_tol: relative residual tolerance of conjugate gradients.
        cg_max_iter: iteration cap (default 10 m).

    Raises:
        ShapeError: if matrix is not 2-D.
    """

    def __init__(
        self, matrix: Tensor, *, cg_tol: float = 1e-10, cg_max_iter: int | None = None
    ) -> None:
        a = torch.as_tensor(matrix)
        if a.ndim != 2:
            raise ShapeError(f"matrix must have shape (m, D), got {tuple(a.shape)}")
        check_finite("matrix", a)
        self.matrix = a
        self.out_dim, self.in_dim = (int(s) for s in a.shape)
        self.cg_tol = float(cg_tol)
        self.cg_max_iter = cg_max_iter if cg_max_iter is not None else 10 * self.out_dim

    def _forward(self, x: Tensor) -> Tensor:
        return x @ self.matrix.to(x).T

    def _adjoint(self, y: Tensor) -> Tensor:
        return y @ self.matrix.to(y)

    def _solve_normal(self, v: Tensor, r2: Tensor, sigma_y2: float) -> Tensor:
        a = self.matrix.to(v)

        def apply(u: Tensor) -> Tensor:  # (r2 A A^T + s I) u, row-wise
            return r2 * ((u @ a) @ a.T) + sigma_y2 * u

        u = torch.zeros_like(v)
        res = v - apply(u)
        p = res.clone()
        rs = (res * res).sum(1, keepdim=True)
        target = (self.cg_tol**2) * (v * v).sum(1, keepdim=True).clamp_min(1e-300)
        for _ in range(self.cg_max_iter):
            if bool((rs <= target).all()):
                break
            ap = apply(p)
            alpha = rs / (p * ap).sum(1, keepdim=True).clamp_min(1e-300)
            u = u + alpha * p
            res = res - alpha * ap
            rs_new = (res * res).sum(1, keepdim=True)
            p = res + (rs_new / rs.clamp_min(1e-300)) * p
            rs = rs_new
        return u
