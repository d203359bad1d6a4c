"""Measurement operators: adjoint identity, structured solves against dense linear algebra."""

from __future__ import annotations

import pytest
import torch

from tessera.control.operators import Denoise, Dense, GaussianBlur, Inpaint, SuperResolution
from tessera.errors import ShapeError, ValidationError

F64 = torch.float64


def _ops(seed: int):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(8, 8, generator=g) > 0.4
    return [
        Inpaint(mask),
        SuperResolution(2, (8, 8)),
        GaussianBlur(3, 1.0, (8, 8)),
        Denoise(64),
        Dense(torch.randn(20, 64, generator=g, dtype=F64)),
    ]


def _matrix(op) -> torch.Tensor:
    eye = torch.eye(op.in_dim, dtype=F64)
    return op.forward(eye).T  # column j = A e_j: (m, D)


@pytest.mark.parametrize("k", range(5))
def test_adjoint_and_normal_solve_match_dense_algebra(k: int, seed: int) -> None:
    op = _ops(seed)[k]
    A = _matrix(op)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(3, op.in_dim, generator=g, dtype=F64)
    y = torch.randn(3, op.out_dim, generator=g, dtype=F64)
    torch.testing.assert_close(op.forward(x), x @ A.T, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(op.adjoint(y), y @ A, rtol=1e-12, atol=1e-12)
    r2 = torch.tensor([0.3, 1.0, 0.0], dtype=F64)
    for sigma_y2 in (0.01, 0.5):
        u = op.solve_normal(y, r2, sigma_y2)
        for i in range(3):
            M = r2[i] * A @ A.T + sigma_y2 * torch.eye(op.out_dim, dtype=F64)
            torch.testing.assert_close(u[i], torch.linalg.solve(M, y[i]), rtol=1e-8, atol=1e-8)


def test_image_layouts_and_known_values() -> None:
    x = torch.arange(16, dtype=F64).reshape(1, 1, 4, 4)
    sr = SuperResolution(2, (4, 4))
    torch.testing.assert_close(sr.forward(x), torch.tensor([[2.5, 4.5, 10.5, 12.5]], dtype=F64))
    blur = GaussianBlur(3, 0.8, (4, 4))
    torch.testing.assert_close(
        blur.forward(torch.ones(2, 16, dtype=F64)), torch.ones(2, 16, dtype=F64)
    )
    assert abs(blur.kernel.sum().item() - 1) < 1e-12
    assert Denoise().forward(x).shape == (1, 16)


def test_bad_input() -> None:
    with pytest.raises(ValidationError, match="at least one pixel"):
        Inpaint(torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValidationError, match="divide"):
        SuperResolution(3, (8, 8))
    with pytest.raises(ValidationError, match="odd"):
        GaussianBlur(4, 1.0, (8, 8))
    with pytest.raises(ValidationError, match="sigma"):
        GaussianBlur(3, 0.0, (8, 8))
    with pytest.raises(ShapeError, match="matrix"):
        Dense(torch.zeros(3))
    op = SuperResolution(2, (8, 8))
    with pytest.raises(ShapeError, match=r"\(B, 64\)"):
        op.forward(torch.zeros(2, 63))
    with pytest.raises(ShapeError, match=r"\(B, 16\)"):
        op.adjoint(torch.zeros(2, 15))
    with pytest.raises(ValidationError, match="sigma_y2"):
        op.solve_normal(torch.zeros(2, 16), 1.0, -1.0)
