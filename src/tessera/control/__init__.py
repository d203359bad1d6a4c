"""Steering a trained flow without retraining: linear inverse problems and D-Flow.

- :mod:`tessera.control.operators`: measurement operators A with adjoints and
  structured normal-equation solves.
- :mod:`tessera.control.gaussian_prior`: a low-rank Gaussian prior and its exact
  posterior, OT-ODE's time-aware initialisation.
- :mod:`tessera.control.inverse`: OT-ODE / PiGDM for flows (Pokle et al.), the flow-DPS
  baseline, PiGDM on VP diffusion models, diffusion-to-flow conversion.
- :mod:`tessera.control.dflow`: D-Flow source-point optimisation (Ben-Hamu et al.).
- :mod:`tessera.control.finetune`: reward fine-tuning as stochastic optimal control:
  Adjoint Matching with the memoryless schedule (Domingo-Enrich et al.), the KL
  certificate, and the DRaFT / ReFL / discrete-adjoint baselines.
- :mod:`tessera.control.rewards`: differentiable rewards and the digits reward classifier.
"""

from __future__ import annotations

from tessera.control.dflow import (
    DFlowResult,
    blend_init,
    chi_regulariser,
    classifier_cost,
    dflow,
    linear_cost,
    regressor_cost,
)
from tessera.control.finetune import (
    FineTuneResult,
    KLCertificate,
    ResidualVelocity,
    adjoint_matching,
    discrete_adjoint,
    draft,
    kl_certificate,
    refl,
)
from tessera.control.gaussian_prior import GaussianPrior
from tessera.control.inverse import diffusion_to_flow, flow_dps, ot_ode, pigdm_vp
from tessera.control.operators import (
    Denoise,
    Dense,
    GaussianBlur,
    Inpaint,
    LinearOperator,
    SuperResolution,
)

__all__ = [
    "DFlowResult",
    "Denoise",
    "Dense",
    "FineTuneResult",
    "GaussianBlur",
    "GaussianPrior",
    "Inpaint",
    "KLCertificate",
    "LinearOperator",
    "ResidualVelocity",
    "SuperResolution",
    "adjoint_matching",
    "blend_init",
    "chi_regulariser",
    "classifier_cost",
    "dflow",
    "diffusion_to_flow",
    "discrete_adjoint",
    "draft",
    "flow_dps",
    "kl_certificate",
    "linear_cost",
    "ot_ode",
    "pigdm_vp",
    "refl",
    "regressor_cost",
]
