"""Checks of the options shared by the robust solvers: gate family, partition, prior set."""

from __future__ import annotations

import numpy as np

from theory.errors import InvalidOptionError, ShapeMismatchError
from theory.gates import check_cells
from theory.prior import PriorSet

#: Gate families: every gate in G1, input-independent gates, gates constant on cells.
FAMILIES = ("full", "constant", "partition")


def check_family(family: str, cells, n: int) -> np.ndarray | None:
    """Validate the gate family; return the partition labels (``0..C-1``) or None.

    ``cells`` is required by, and only allowed with, the ``"partition"`` family.
    """
    if family not in FAMILIES:
        raise InvalidOptionError(f"unknown gate family {family!r}; allowed: {', '.join(FAMILIES)}")
    if family == "partition":
        if cells is None:
            raise InvalidOptionError("gate family 'partition' needs cells (a cell label for each outcome)")
        return check_cells(cells, n)[0]
    if cells is not None:
        raise InvalidOptionError(f"cells were given but the gate family is {family!r}; use family='partition'")
    return None


def as_prior(prior, p: int) -> PriorSet:
    """The prior set Lambda for ``p`` domains: the whole simplex when ``prior`` is None."""
    if prior is None:
        return PriorSet(p)
    if not isinstance(prior, PriorSet):
        raise InvalidOptionError(f"prior must be a theory.PriorSet or None, got {type(prior).__name__}")
    if prior.p != p:
        raise ShapeMismatchError(f"the prior set is for p={prior.p} domains but the instance has p={p}")
    return prior
