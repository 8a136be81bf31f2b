"""Checks on the inputs of every solver: distributions, shapes, coverage."""

from __future__ import annotations

import numpy as np

from theory.errors import (
    InvalidDistributionError,
    ShapeMismatchError,
    UncoveredOutcomeError,
)

#: Rows must sum to one within this absolute tolerance.
SUM_TOL = 1e-8


def as_distributions(a, name: str, *, sum_tol: float = SUM_TOL) -> np.ndarray:
    """Return ``a`` as a float64 (rows x outcomes) array of probability distributions.

    A 1-D input is treated as a single row. Raises
    :class:`~theory.errors.InvalidDistributionError` naming the first offending row and
    outcome for NaN, infinite or negative entries, and the first row whose sum differs
    from one by more than ``sum_tol``.
    """
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] == 0 or arr.shape[0] == 0:
        raise ShapeMismatchError(
            f"{name} must be a non-empty 2-D array (rows x outcomes), got shape {np.shape(a)}"
        )
    finite = np.isfinite(arr)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise InvalidDistributionError(
            f"{name} row {row}, outcome {col}: entry is {arr[row, col]} (NaN or infinite)"
        )
    negative = arr < 0
    if negative.any():
        row, col = np.argwhere(negative)[0]
        raise InvalidDistributionError(
            f"{name} row {row}, outcome {col}: negative probability {arr[row, col]:.3g}"
        )
    sums = arr.sum(axis=1)
    bad = np.abs(sums - 1.0) > sum_tol
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InvalidDistributionError(
            f"{name} row {row} sums to {sums[row]:.12g}, not 1 (tolerance {sum_tol:g})"
        )
    return arr


def as_instance(domains, experts, *, sum_tol: float = SUM_TOL, check: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Validate a finite instance: domains ``D`` and experts ``P``, both (p x n).

    Besides the checks of :func:`as_distributions`, the two arrays must have the same
    shape, and every outcome with domain mass must be covered by at least one expert
    (otherwise every gated model has infinite KL to that domain). With ``check=False``
    the arrays are only converted to float64: the solvers' ``validate=False`` skips the
    passes over the data for inputs already validated.
    """
    if not check:
        return np.asarray(domains, dtype=np.float64), np.asarray(experts, dtype=np.float64)
    D = as_distributions(domains, "domains", sum_tol=sum_tol)
    P = as_distributions(experts, "experts", sum_tol=sum_tol)
    if D.shape != P.shape:
        raise ShapeMismatchError(
            f"domains have shape {D.shape} but experts have shape {P.shape}; "
            "expected the same (p domains/experts x n outcomes)"
        )
    covered = P.max(axis=0) > 0
    uncovered = (D > 0) & ~covered[None, :]
    if uncovered.any():
        row, col = np.argwhere(uncovered)[0]
        raise UncoveredOutcomeError(
            f"domain {row} puts mass {D[row, col]:.3g} on outcome {col}, which no expert covers: "
            "every gated model has infinite KL to that domain"
        )
    return D, P


def as_weights(lam, p: int, name: str = "lambda", *, sum_tol: float = SUM_TOL) -> np.ndarray:
    """Validate a mixture weight vector of length ``p`` (in the simplex)."""
    arr = np.asarray(lam, dtype=np.float64)
    if arr.ndim != 1 or arr.shape[0] != p:
        raise ShapeMismatchError(f"{name} must have length p={p}, got shape {arr.shape}")
    return as_distributions(arr, name, sum_tol=sum_tol)[0]
