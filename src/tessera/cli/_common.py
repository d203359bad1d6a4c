"""Helpers shared by the sub-command modules."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["emit"]


def emit(args: argparse.Namespace, payload: dict[str, Any], human: str) -> None:
    """Print JSON (with ``--json``) or the human summary.

    Args:
        args: parsed arguments; ``args.json`` selects JSON.
        payload: JSON-ready result.
        human: the human-readable summary.
    """
    if getattr(args, "json", False):
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(human)
