r"""Differentiable rewards r(x) for reward fine-tuning, and a reward classifier for digits.

A reward is any callable ``r(x) -> (B,)`` built from torch operations, so that
``torch.autograd`` gives :math:`\nabla_x r`. The helpers here cover the common cases:

- :func:`linear`: :math:`r(x) = b^T x` (the exact Gaussian references tilt by it);
- :func:`quadratic`: :math:`r(x) = -\tfrac{w}{2}\|x - c\|^2`;
- :func:`classifier_log_prob`: :math:`r(x) = \log p_{\text{clf}}(c \mid x)`;
- :func:`as_reward`: wraps any callable with shape and finiteness checks.

:func:`digits_classifier` trains the *reward* classifier of the digits experiments: a
small torch MLP on the training split (with input noise, so its gradients are smooth
near the data). It is a different model from :func:`tessera.metrics.digits_judge`,
the independent judge that scores the results; never evaluate with the reward model.

:func:`parse_reward` turns the CLI's ``linear:0.4,-0.3``, ``quadratic:...`` and
``classifier:3`` specifications into rewards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from tessera._validate import check_finite, check_positive, check_positive_int
from tessera.errors import ShapeError, UnsupportedError, ValidationError

__all__ = [
    "REWARD_KINDS",
    "as_reward",
    "classifier_log_prob",
    "digits_classifier",
    "linear",
    "parse_reward",
    "quadratic",
]

RewardFn = Callable[[Tensor], Tensor]
REWARD_KINDS: tuple[str, ...] = ("linear", "quadratic", "classifier")


def _vector(name: str, value: Sequence[float] | np.ndarray | Tensor) -> Tensor:
    out = torch.as_tensor(np.asarray(value, dtype=np.float64))
    if out.ndim != 1 or out.numel() == 0:
        raise ShapeError(f"{name} must be a non-empty 1-D vector, got shape {tuple(out.shape)}")
    check_finite(name, out)
    return out


def linear(b: Sequence[float] | np.ndarray | Tensor) -> RewardFn:
    """The linear reward r(x) = b^T x on flattened samples.

    Args:
        b: the direction, shape (D,).

    Returns:
        ``r(x) -> (B,)`` for x of shape (B, ...) with D entries per sample.

    Raises:
        ShapeError: b not a non-empty vector.
        NonFiniteError: NaN or inf in b.

    Example:
        >>> r = linear([1.0, -2.0])
        >>> r(torch.tensor([[3.0, 1.0]])).tolist()
        [1.0]
    """
    bv = _vector("b", b)

    def reward(x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != bv.numel():
            raise ShapeError(f"linear reward has {bv.numel()} weights but x has {flat.shape[1]}")
        return flat @ bv.to(device=x.device, dtype=x.dtype)

    return reward


def quadratic(center: Sequence[float] | np.ndarray | Tensor, weight: float = 1.0) -> RewardFn:
    """The quadratic reward r(x) = -(weight / 2) ||x - center||^2.

    Args:
        center: the target point, shape (D,).
        weight: the curvature (> 0).

    Returns:
        ``r(x) -> (B,)``.

    Raises:
        ShapeError: center not a non-empty vector.
        ValidationError: weight not positive.
    """
    c = _vector("center", center)
    check_positive("weight", weight)

    def reward(x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != c.numel():
            raise ShapeError(
                f"quadratic reward has {c.numel()} coordinates but x has {flat.shape[1]}"
            )
        return -0.5 * weight * ((flat - c.to(device=x.device, dtype=x.dtype)) ** 2).sum(1)

    return reward


def classifier_log_prob(logits_fn: Callable[[Tensor], Tensor], target: int) -> RewardFn:
    """The reward r(x) = log p(target | x) of a differentiable classifier.

    Args:
        logits_fn: ``logits(x) -> (B, K)``.
        target: the class index in [0, K).

    Returns:
        ``r(x) -> (B,)``.

    Raises:
        ValidationError: a negative target, or one >= K when first called.
    """
    if isinstance(target, bool) or not isinstance(target, int | np.integer) or target < 0:
        raise ValidationError(f"target must be a class index >= 0, got {target!r}")

    def reward(x: Tensor) -> Tensor:
        logits = logits_fn(x)
        if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
            raise ShapeError(f"logits_fn must return (B, K), got {tuple(logits.shape)}")
        if target >= logits.shape[1]:
            raise ValidationError(
                f"target {target} is not a class of a {logits.shape[1]}-class classifier"
            )
        return torch.log_softmax(logits, dim=-1)[:, int(target)]

    return reward


def as_reward(fn: Callable[[Tensor], Tensor], *, name: str = "reward_fn") -> RewardFn:
    """Wrap a callable so that a wrong shape or a non-finite value is a clear error.

    Args:
        fn: ``r(x) -> (B,)`` (a (B, 1) output is accepted and flattened).
        name: how errors name the function.

    Returns:
        The checked reward.

    Raises:
        ValidationError: if ``fn`` is not callable.
    """
    if not callable(fn):
        raise ValidationError(f"{name} must be callable as r(x) -> (B,), got {type(fn).__name__}")

    def reward(x: Tensor) -> Tensor:
        r = fn(x)
        if not isinstance(r, Tensor):
            raise ValidationError(f"{name} must return a torch tensor, got {type(r).__name__}")
        if r.ndim == 2 and r.shape[1] == 1:
            r = r[:, 0]
        if r.shape != (x.shape[0],):
            raise ShapeError(
                f"{name} must return shape (B,) = ({x.shape[0]},), got {tuple(r.shape)}"
            )
        return r

    return reward


class _Classifier(nn.Module):
    def __init__(self, dim: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(x.shape[0], -1))


def digits_classifier(
    dataset: str = "digits",
    *,
    seed: int = 0,
    hidden: int = 256,
    epochs: int = 100,
    noise: float = 0.2,
) -> nn.Module:
    """Train the reward classifier of a bundled digit data set (seconds on a CPU).

    A two-hidden-layer SiLU MLP fitted with Adam on the training split, each epoch on
    inputs with Gaussian noise of sd ``noise`` added (smooth gradients near the data
    manifold). It returns logits; use it with :func:`classifier_log_prob`. Evaluate
    results with the independent judge (:func:`tessera.metrics.digits_judge`), not with
    this model.

    Args:
        dataset: ``"digits"`` (8x8) or ``"mnist5k"`` (28x28).
        seed: seed of the split, the initial weights and the noise.
        hidden: hidden width.
        epochs: full-batch epochs (minibatches of 256).
        noise: input-noise sd in pixel units of [-1, 1] images (>= 0).

    Returns:
        The trained classifier in eval mode with ``requires_grad=False``; it maps
        (B, H*W) or (B, 1, H, W) images to (B, 10) logits.

    Raises:
        UnsupportedError: unknown data set.
        ValidationError: bad sizes.
    """
    from tessera.data import digits, mnist5k

    if dataset not in ("digits", "mnist5k"):
        raise UnsupportedError(f"dataset must be 'digits' or 'mnist5k', got {dataset!r}")
    check_positive_int("hidden", hidden)
    check_positive_int("epochs", epochs)
    check_positive("noise", noise, allow_zero=True)
    ds = digits(seed=seed) if dataset == "digits" else mnist5k(seed=seed)
    x = torch.as_tensor(np.array(ds.train_x, dtype=np.float32))
    y = torch.as_tensor(np.array(ds.train_y, dtype=np.int64))
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = _Classifier(x.shape[1], hidden, int(ds.num_classes))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    n = x.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, 256):
            idx = perm[start : start + 256]
            xb = x[idx] + noise * torch.randn(x[idx].shape, generator=gen)
            loss = nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval().requires_grad_(False)
    return model


def parse_reward(spec: str, *, dim: int | None = None, dataset: str | None = None) -> RewardFn:
    """Build a reward from a CLI specification.

    Forms: ``linear:b1,b2,...`` (one weight per coordinate), ``quadratic:c1,c2,...``
    (unit weight), ``classifier:DIGIT`` (log-probability of the digit under
    :func:`digits_classifier` of ``dataset``).

    Args:
        spec: the specification.
        dim: number of coordinates per sample (checked for linear/quadratic).
        dataset: the flow's data set (needed by ``classifier``).

    Returns:
        The reward.

    Raises:
        UnsupportedError: unknown kind.
        ValidationError: malformed values, a wrong length, or a classifier reward for a
            data set without labels.
    """
    kind, _, arg = spec.partition(":")
    if kind not in REWARD_KINDS:
        raise UnsupportedError(
            f"reward kind {kind!r} in {spec!r} is unknown; use one of {', '.join(REWARD_KINDS)} "
            "as KIND:VALUES, e.g. linear:0.4,-0.3 or classifier:3"
        )
    if kind == "classifier":
        try:
            digit = int(arg)
        except ValueError:
            raise ValidationError(
                f"classifier reward needs a digit, e.g. classifier:3; got {spec!r}"
            ) from None
        if not 0 <= digit <= 9:
            raise ValidationError(f"classifier digit must be in 0..9, got {digit}")
        if dataset not in ("digits", "mnist5k"):
            raise ValidationError(
                f"classifier rewards need a flow trained on digits or mnist5k, got {dataset!r}"
            )
        return classifier_log_prob(digits_classifier(dataset), digit)
    try:
        values = [float(v) for v in arg.split(",")]
    except ValueError:
        raise ValidationError(
            f"{kind} reward needs comma-separated numbers, e.g. {kind}:0.4,-0.3; got {spec!r}"
        ) from None
    if dim is not None and len(values) != dim:
        raise ValidationError(
            f"{kind} reward {spec!r} has {len(values)} values but samples have {dim} coordinates"
        )
    return linear(values) if kind == "linear" else quadratic(values)
