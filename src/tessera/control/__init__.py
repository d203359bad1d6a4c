"""Steering a trained flow without retraining: linear inverse problems and D-Flow.

- :mod:`tessera.control.operators`: measurement operators A with adjoints and
  structured normal-equation solves.
- :mod:`tessera.control.inverse`: OT-ODE / PiGDM for flows (Pokle et al.), the flow-DPS
  baseline, PiGDM on VP diffusion models, diffusion-to-flow conversion.
- :mod:`tessera.control.dflow`: D-Flow source-point optimisation (Ben-Hamu et al.).
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
    "GaussianBlur",
    "Inpaint",
    "LinearOperator",
    "SuperResolution",
    "blend_init",
    "chi_regulariser",
    "classifier_cost",
    "dflow",
    "diffusion_to_flow",
    "flow_dps",
    "linear_cost",
    "ot_ode",
    "pigdm_vp",
    "regressor_cost",
]
