"""tessera: research methods that work for real, verified against their papers.

Subpackages are imported on demand so that, e.g., ``tessera.interference`` never
pulls in torch. See ``tessera.flows`` for the flow-matching core.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
