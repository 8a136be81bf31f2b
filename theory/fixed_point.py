"""The paper's Algorithm 1 for the linearised game, and the best-response iteration."""

from __future__ import annotations

import time

import numpy as np

from theory.certificate import dual_function
from theory.divergences import kl
from theory.errors import InvalidOptionError
from theory.gates import gate_from_q, pointwise_hull, require_nonempty_G1
from theory.options import as_prior, check_tol
from theory.prior import PriorProjector
from theory.result import Certificate, SolverResult
from theory.simplex import project_capped_simplex
from theory.validation import as_instance

#: The two iterations offered by :func:`solve_fixed_point`.
METHODS = ("gradient", "best-response")


def _start(D, P, prior, seed):
    """Start point: ``lam0`` in Lambda and ``q0 = P^T w0`` (a constant gate, in the hull).

    With ``seed=None`` both weight vectors are uniform (``lam0`` a feasible point of
    Lambda); otherwise they are drawn from Dirichlet(1) with that seed.
    """
    p = D.shape[0]
    if seed is None:
        return prior.feasible_point(), np.full(p, 1.0 / p) @ P
    rng = np.random.default_rng(seed)
    lam0 = PriorProjector(prior)(rng.dirichlet(np.ones(p)))
    return lam0, rng.dirichlet(np.ones(p)) @ P


#: Cap on the magnitude of a gradient entry. ``D_lam / q`` overflows where ``q`` is
#: subnormal; a step along such an entry takes that coordinate to its upper bound
#: anyway, and a finite cap keeps the step sizes and the projection finite.
_GRADIENT_CAP = 1e300


def _gradient_q(D_lam, q):
    """Gradient of ``sum_k lam_k KL(D_k || q) = KL-terms of D_lam`` in q: ``-D_lam / q``."""
    with np.errstate(over="ignore", divide="ignore"):
        ratio = np.divide(D_lam, q, out=np.zeros_like(q), where=D_lam > 0)
    return -np.minimum(ratio, _GRADIENT_CAP)


def solve_fixed_point(
    D,
    P,
    *,
    prior=None,
    method: str = "gradient",
    max_iter: int = 2000,
    eta_lam: float | None = None,
    eta_q: float | None = None,
    tol: float = 1e-6,
    seed: int | None = 0,
    record_every: int = 1,
    validate: bool = True,
) -> SolverResult:
    """Solve the linearised game ``min_{l<=q<=u, sum q=1} max_{lam in Lambda} sum_k lam_k KL(D_k || q)``.

    ``method="gradient"`` is the paper's Algorithm 1, simultaneous steps of both players
    from ``(lam_t, q_t)``:

    - ``lam``: exponentiated gradient, ``lam <- Proj_Lambda(lam * exp(eta_lam KL(D || q)))``
      where ``Proj_Lambda`` is the KL (Bregman) projection
      (:class:`theory.prior.PriorProjector`: a water-fill for box bounds, a small
      convex program for a polytope);
    - ``q``: projected gradient, ``q <- Proj(q + eta_q D_lam / q)``, the Euclidean
      projection onto the hull cut by ``sum q = 1``
      (:func:`theory.simplex.project_capped_simplex`).

    The averaged iterates converge at ``O(sqrt(log p / T))``. Default step sizes follow
    that theory: ``eta_lam = sqrt(8 log p / T) / B`` with ``B`` the largest KL at the
    start (the Hedge rate for gains in ``[0, B]``), and ``eta_q = R / (G sqrt T)`` with
    ``R = ||u - l||_2`` bounding the diameter of the hull and ``G`` the gradient norm at
    the start.

    ``method="best-response"`` alternates the two best-response maps of the Kakutani
    argument: ``lam_t = argmax_{lam in Lambda} lam . KL(D || q_{t-1})`` and
    ``q_t = best_response(lam_t)``. It may cycle between vertices of Lambda instead of
    converging; a repeated ``lam`` is detected, the iteration stops and
    ``info["cycle_length"]`` says so (length 1: a pure saddle point).

    Certificate, at every recorded step, for the averaged iterates ``(lam_bar, q_bar)``:
    ``phi(lam_bar) <= value <= max_{lam in Lambda} lam . KL(D || q_bar)``, both sides
    valid for any point of Lambda and of the hull. The returned ``lam`` and ``q`` are
    the points with the best lower and upper bounds met among the averaged and the last
    iterates, and ``gap`` is their difference.

    Parameters
    ----------
    D, P : array_like (p, n)
    prior : PriorSet, optional
    method : {"gradient", "best-response"}
    max_iter : int
        Number of steps T (also sets the default step sizes); fewer are taken when the
        certified gap reaches ``tol`` first.
    eta_lam, eta_q : float, optional
    tol : float
        Stop when the certified gap is at most ``tol``; status ``"optimal"`` then,
        otherwise ``"not_converged"`` with a :class:`~theory.result.ConvergenceWarning`.
    seed : int or None
        Seed of the Dirichlet start point; None starts from uniform weights.
    record_every : int
        Evaluate the certificate (one best response, O(n p)) every this many steps.
    validate : bool

    Returns
    -------
    SolverResult
        ``solver="fixed-point"``; ``history`` holds, per recorded step, ``iteration``,
        ``lam`` (averaged), ``lower``, ``upper``, ``gap`` and ``value`` of the averaged
        iterates, and ``best_gap``.
    """
    start = time.perf_counter()
    if method not in METHODS:
        raise InvalidOptionError(f"unknown fixed-point method {method!r}; allowed: {', '.join(METHODS)}")
    if max_iter < 1 or record_every < 1:
        raise InvalidOptionError(f"max_iter ({max_iter}) and record_every ({record_every}) must be positive")
    tol = check_tol(tol)
    D, P = as_instance(D, P, check=validate)
    p, n = D.shape
    prior = as_prior(prior, p)
    require_nonempty_G1(P)
    lo, hi = pointwise_hull(P)
    project_lam = PriorProjector(prior)

    lam, q = _start(D, P, prior, seed)
    losses = kl(D, q)
    if eta_lam is None:
        scale = float(np.max(losses[np.isfinite(losses)], initial=0.0)) or 1.0
        eta_lam = np.sqrt(8 * np.log(max(p, 2)) / max_iter) / scale
    if eta_q is None:
        grad_norm = float(np.linalg.norm(_gradient_q(lam @ D, q))) or 1.0
        eta_q = float(np.linalg.norm(hi - lo)) / (grad_norm * np.sqrt(max_iter))

    from theory.best_response import best_response

    lam_sum, q_sum = np.zeros(p), np.zeros(n)
    best_lower, best_upper = -np.inf, np.inf
    best_lam, best_q = lam, q
    history = {key: [] for key in ("iteration", "lam", "lower", "upper", "gap", "value", "best_gap")}
    seen: dict[bytes, int] = {}
    cycle_length = None
    t = 0
    for t in range(1, max_iter + 1):
        lam_sum += lam
        q_sum += q
        losses = kl(D, q)
        if method == "gradient":
            finite = np.where(np.isfinite(losses), losses, np.max(losses[np.isfinite(losses)], initial=0.0))
            lam_next = project_lam(lam * np.exp(eta_lam * (finite - finite.max())))
            q_next = project_capped_simplex(q - eta_q * _gradient_q(lam @ D, q), lo, hi)
        else:
            lam_next = prior.argmax_linear(losses)
            q_next = best_response(D, P, lam_next)
            key = np.round(lam_next, 12).tobytes()
            if key in seen:
                cycle_length = t - seen[key]
            seen[key] = t

        if t % record_every == 0 or t == max_iter or cycle_length is not None:
            # Clipping only undoes rounding of the average (it lies in the hull).
            lam_bar, q_bar = lam_sum / t, np.clip(q_sum / t, lo, hi)
            for cand_lam, cand_q in ((lam_bar, q_bar), (lam_next, q_next)):
                lower = dual_function(D, P, cand_lam)[0]
                upper = prior.max_linear(kl(D, cand_q))
                if lower > best_lower:
                    best_lower, best_lam = lower, cand_lam
                if upper < best_upper:
                    best_upper, best_q = upper, cand_q
                if cand_q is q_bar:
                    avg_lower, avg_upper = lower, upper
            history["iteration"].append(t)
            history["lam"].append(lam_bar.copy())
            history["lower"].append(avg_lower)
            history["upper"].append(avg_upper)
            history["gap"].append(avg_upper - avg_lower)
            history["value"].append(avg_upper)
            history["best_gap"].append(best_upper - best_lower)
            if best_upper - best_lower <= tol or cycle_length is not None:
                break
        lam, q = lam_next, q_next

    info = {"method": method, "eta_lam": float(eta_lam), "eta_q": float(eta_q), "family": "full"}
    if method == "best-response":
        info["cycle_length"] = cycle_length if cycle_length is not None else 0
    return SolverResult.certified(
        Certificate.of(best_lower, best_upper, tol),
        q=best_q,
        gate=gate_from_q(best_q, P),
        value=best_upper,
        lam=best_lam,
        kl=kl(D, best_q),
        iterations=t,
        seconds=time.perf_counter() - start,
        solver="fixed-point",
        tol=tol,
        history=history,
        info=info,
    )
