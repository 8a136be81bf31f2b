"""The one result type shared by every solver of the suite."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: The solver certified its answer to the requested tolerance.
OPTIMAL = "optimal"
#: The solver stopped (iteration or time limit) before reaching its tolerance.
NOT_CONVERGED = "not_converged"
#: A third-party solver reported reduced accuracy.
INACCURATE = "inaccurate"


class ConvergenceWarning(RuntimeWarning):
    """Emitted when a solver returns without reaching its requested tolerance."""


def warn_if_missed(solver: str, status: str, gap: float, tol: float, iterations: int, *, stacklevel: int = 3) -> None:
    """The one warning of every solver: a :class:`ConvergenceWarning` unless ``status`` is optimal.

    ``stacklevel`` counts from the caller of this function (3: the caller of a solver
    that calls it directly).
    """
    if status != OPTIMAL:
        warnings.warn(
            f"{solver}: status {status}, certified gap {gap:.3g} nats "
            f"above the tolerance {tol:.3g} after {iterations} iterations",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )


#: Relative size (to the value) of a negative certified gap that is rounding only:
#: upper and lower bounds are sums of n terms computed along different paths.
GAP_ROUNDING = 64 * np.finfo(float).eps


@dataclass(frozen=True)
class Certificate:
    """``lower <= optimum <= upper`` and the status it gives for a requested ``tol``.

    The one rule of every solver: ``status = "optimal"`` when ``gap <= tol``, otherwise
    ``missed`` (``"not_converged"`` for the suite's iterative solvers, ``"inaccurate"``
    for a third-party solver). A negative gap within rounding of the value is clamped
    to zero (``lower = upper``) and ``clamped`` says by how much; a larger negative gap
    is a contradiction and is reported as it is, with status ``"inaccurate"``.
    """

    lower: float
    upper: float
    gap: float
    status: str
    clamped: float = 0.0

    @classmethod
    def of(cls, lower: float, upper: float, tol: float, *, missed: str = NOT_CONVERGED) -> "Certificate":
        lower, upper = float(lower), float(upper)
        gap = upper - lower
        clamped = 0.0
        if gap < 0:
            if -gap <= GAP_ROUNDING * max(1.0, abs(upper)):
                clamped, lower, gap = gap, upper, 0.0
            else:
                return cls(lower, upper, gap, INACCURATE)
        return cls(lower, upper, gap, OPTIMAL if gap <= tol else missed, clamped)

    def info(self) -> dict:
        """``{"gap_clamped": amount}`` when the gap was clamped, for the result's info."""
        return {"gap_clamped": self.clamped} if self.clamped else {}


@dataclass
class SolverResult:
    """Solution of a (robust or fixed-mixture) gate problem on a finite outcome space.

    Attributes
    ----------
    q : ndarray (n,)
        The gated model ``pi_g`` as a distribution over outcomes.
    gate : ndarray (n, p)
        A gate realising ``q``: ``q = sum_k gate[:, k] * P[k]``, rows in the simplex.
        A solver may pass a zero-argument callable instead (e.g. the dense form of a
        :class:`theory.gates.CompactGate`): the (n x p) array is then built on first
        access only, since at large n it is p times the size of ``q``.
    value : float
        The objective at ``q`` in nats: ``max_{lam in Lambda} sum_k lam_k KL(D_k || q)``
        for the robust problem, ``KL(D_lam || q)`` for a fixed mixture.
    lam : ndarray (p,)
        The least-favourable mixture (robust) or the given mixture (fixed).
    gap : float
        Certified bound on the error of ``value``: upper minus lower bound (nats).
    lower, upper : float
        The certificate ``lower <= optimal value <= upper``.
    kl : ndarray (p,)
        ``KL(D_k || q)`` for each domain, recomputed in float64 numpy.
    iterations : int
    seconds : float
    status : str
        ``"optimal"`` when the tolerance was reached, otherwise ``"not_converged"`` or
        ``"inaccurate"``.
    solver : str
    tol : float
        The requested tolerance on ``gap``.
    history : dict of lists
        Per-iteration traces (solver dependent), e.g. ``lower``, ``upper``, ``lam``.
    info : dict
        Anything else the solver reports (gate family, dual variables, ...).
    """

    q: np.ndarray
    gate: np.ndarray = field(repr=False)
    value: float
    lam: np.ndarray
    gap: float
    lower: float
    upper: float
    kl: np.ndarray
    iterations: int
    seconds: float
    status: str
    solver: str
    tol: float
    history: dict[str, list] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def certified(cls, cert: Certificate, *, warn: bool = True, info: dict | None = None, **fields) -> "SolverResult":
        """The result of a solver whose certificate is ``cert``: the one rule for every solver.

        ``gap``, ``lower``, ``upper`` and ``status`` are the certificate's (status from
        the certified gap and the requested ``tol``, never from a third-party solver's
        word), ``cert.info()`` joins ``info``, and a missed tolerance gives one
        :class:`ConvergenceWarning` (unless ``warn=False``). ``fields`` are the others.
        """
        result = cls(gap=cert.gap, lower=cert.lower, upper=cert.upper, status=cert.status,
                     info={**(info or {}), **cert.info()}, **fields)
        return result.warn_if_not_converged(stacklevel=5) if warn else result

    @property
    def converged(self) -> bool:
        return self.status == OPTIMAL

    def warn_if_not_converged(self, *, stacklevel: int = 4) -> "SolverResult":
        """Emit a :class:`ConvergenceWarning` when the tolerance was missed; return self."""
        warn_if_missed(self.solver, self.status, self.gap, self.tol, self.iterations, stacklevel=stacklevel)
        return self

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (no per-outcome arrays)."""
        n, p = self.q.shape[0], self.lam.shape[0]
        return {
            "value": float(self.value),
            "lam": [float(x) for x in self.lam],
            "kl": [float(x) for x in self.kl],
            "gap": float(self.gap),
            "lower": float(self.lower),
            "upper": float(self.upper),
            "status": self.status,
            "solver": self.solver,
            "iterations": int(self.iterations),
            "seconds": float(self.seconds),
            "tol": float(self.tol),
            "n": int(n),
            "p": int(p),
            **{k: v for k, v in self.info.items() if isinstance(v, (str, int, float, bool))},
        }


def _get_gate(self) -> np.ndarray:
    gate = self._gate
    if callable(gate):
        gate = self._gate = gate()
    return gate


def _set_gate(self, value) -> None:
    self._gate = value


# A property over the dataclass field: __init__ assigns through the setter, so a callable
# given as ``gate`` is kept unevaluated until the gate is read.
SolverResult.gate = property(_get_gate, _set_gate, doc="The (n x p) gate (built on first access).")
