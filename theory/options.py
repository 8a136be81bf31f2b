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


#: The largest tolerance accepted: a certified gap of a nat or more certifies nothing useful
#: (a typo such as ``1e300`` or ``inf`` would turn every answer into "optimal").
MAX_TOL = 1.0


def check_tol(tol) -> float:
    """The requested certified gap ``tol`` (nats) as a float in ``(0, MAX_TOL]``."""
    try:
        value = float(tol)
    except (TypeError, ValueError):
        raise InvalidOptionError(f"tol must be a number of nats, got {tol!r}") from None
    if not (0 < value <= MAX_TOL):
        raise InvalidOptionError(f"tol must be positive, finite and at most {MAX_TOL:g} nat, got {tol!r}")
    return value


def check_offsets(offsets, p: int, family: str = "full") -> np.ndarray:
    """Per-domain offsets of a shifted game as finite float64 (p,), zeros when None (full family only)."""
    if offsets is None:
        return np.zeros(p)
    if family != "full":
        raise InvalidOptionError(f"offsets apply to the gate family 'full' only, not {family!r}")
    value = np.asarray(offsets, dtype=np.float64)
    if value.shape != (p,):
        raise ShapeMismatchError(f"offsets must have length p={p}, got shape {value.shape}")
    if not np.isfinite(value).all():
        raise InvalidOptionError(f"offsets must be finite, got {value.tolist()}")
    return value


def as_prior(prior, p: int) -> PriorSet:
    """The prior set Lambda for ``p`` domains: the whole simplex when ``prior`` is None."""
    if prior is None:
        return PriorSet(p)
    if not isinstance(prior, PriorSet):
        raise InvalidOptionError(f"prior must be a theory.PriorSet or None, got {type(prior).__name__}")
    if prior.p != p:
        raise ShapeMismatchError(f"the prior set is for p={prior.p} domains but the instance has p={p}")
    return prior
