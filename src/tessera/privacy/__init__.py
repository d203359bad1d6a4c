"""Private releases.

Subpackages are imported on demand:

- :mod:`tessera.privacy.gshm`: the Gaussian sparse histogram mechanism (private
  group-by counts and sums over an unknown key set) with exact (ε, δ) accounting.
  It never imports torch.
"""

from __future__ import annotations

__all__: list[str] = []
