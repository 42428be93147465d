"""Retrieval metrics: `dolg eval revisited` and `dolg eval groups` (returning their --json dicts)."""

from ._dolg import eval_groups as groups
from ._dolg import eval_revisited as revisited

__all__ = ["groups", "revisited"]
