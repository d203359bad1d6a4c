"""Exponential moving average (EMA) of a model's weights.

Example:
    >>> import torch
    >>> model = torch.nn.Linear(2, 1)
    >>> ema = EMA(model, decay=0.9)
    >>> with torch.no_grad():
    ...     _ = model.weight.add_(1.0)
    >>> ema.update(model)
    >>> bool(torch.allclose(ema.module.weight, model.weight - 0.9))
    True
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from tessera.errors import ValidationError

__all__ = ["EMA"]


class EMA:
    r"""Shadow copy of a model whose weights track an exponential moving average.

    After each optimiser step call :meth:`update`; every floating-point parameter
    of the shadow becomes

    .. math:: \theta_{\text{ema}} \leftarrow d\,\theta_{\text{ema}} + (1 - d)\,\theta

    and buffers (and non-floating parameters) are copied. The shadow, ``self.module``,
    is a deep copy of the model in eval mode with ``requires_grad=False``; use it for
    sampling and save it with :func:`tessera.nn.save_model`.

    Args:
        model: the model being trained.
        decay: the EMA decay ``d`` in [0, 1); 0 copies the weights.

    Raises:
        ValidationError: if ``decay`` is not in [0, 1) or ``model`` is not an ``nn.Module``.
    """

    def __init__(self, model: nn.Module, *, decay: float = 0.999):
        if not isinstance(model, nn.Module):
            raise ValidationError(f"model must be an nn.Module, got {type(model).__name__}")
        if isinstance(decay, bool) or not isinstance(decay, int | float) or not 0 <= decay < 1:
            raise ValidationError(f"decay must lie in [0, 1), got {decay!r}; e.g. decay=0.999")
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow weights one EMA step towards ``model``'s weights.

        Args:
            model: the trained model; same architecture (parameter and buffer names)
                as the one given at construction.

        Raises:
            ValidationError: if ``model``'s parameters or buffers do not match the shadow's.
        """
        d = self.decay
        self._zip_check(self.module.named_parameters(), model.named_parameters(), "parameter")
        for s, p in zip(self.module.parameters(), model.parameters(), strict=True):
            if s.is_floating_point() or s.is_complex():
                s.mul_(d).add_(p.detach().to(s.device), alpha=1.0 - d)
            else:
                s.copy_(p)
        self._zip_check(self.module.named_buffers(), model.named_buffers(), "buffer")
        for sb, b in zip(self.module.buffers(), model.buffers(), strict=True):
            sb.copy_(b)

    @staticmethod
    def _zip_check(shadow: object, live: object, what: str) -> None:
        s_items = [(n, tuple(t.shape)) for n, t in shadow]  # type: ignore[attr-defined]
        l_items = [(n, tuple(t.shape)) for n, t in live]  # type: ignore[attr-defined]
        if s_items != l_items:
            diff = sorted(set(s_items) ^ set(l_items))[:5]
            raise ValidationError(
                f"model's {what}s do not match the EMA copy (first differences: {diff}); "
                "pass the same architecture the EMA was built from"
            )

    def state_dict(self) -> dict[str, Tensor]:
        """Return the shadow model's state dict.

        Returns:
            Dict of names to tensors (``self.module.state_dict()``); flat, so it can
            be saved with :func:`tessera.nn.save_tensors`.
        """
        return self.module.state_dict()

    def load_state_dict(self, state_dict: dict[str, Tensor]) -> None:
        """Restore the shadow weights from :meth:`state_dict` output.

        Args:
            state_dict: dict of names to tensors matching the shadow model.

        Raises:
            ValidationError: if keys or shapes do not match.
        """
        try:
            self.module.load_state_dict(state_dict, strict=True)
        except RuntimeError as exc:
            raise ValidationError(f"state_dict does not match the EMA model: {exc}") from exc
