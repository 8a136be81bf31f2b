"""Channel capacity by the Blahut-Arimoto algorithm: the independent check for perfect experts."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from theory.divergences import kl
from theory.options import check_tol
from theory.result import Certificate, warn_if_missed
from theory.validation import as_distributions


@dataclass
class CapacityResult:
    """Capacity of a discrete memoryless channel ``k -> x`` with rows ``W_k``.

    Attributes
    ----------
    capacity : float
        ``C = max_r I(r, W)`` in nats (the midpoint is not used: this is the lower bound,
        and ``capacity + gap`` is the upper bound).
    input : ndarray (p,)
        The final input distribution ``r`` (capacity-achieving up to ``gap``).
    output : ndarray (n,)
        The output distribution ``q = r W``.
    gap : float
        ``upper - lower`` with ``upper = max_k KL(W_k || q)`` and
        ``lower = log sum_k r_k exp(KL(W_k || q))``; ``lower <= C <= upper``.
    lower, upper : float
    iterations : int
    seconds : float
    status : str
        ``"optimal"`` when ``gap <= tol``, else ``"not_converged"`` (with a
        :class:`~theory.result.ConvergenceWarning`).
    tol : float
    """

    capacity: float
    input: np.ndarray
    output: np.ndarray
    gap: float
    lower: float
    upper: float
    iterations: int
    seconds: float
    status: str
    tol: float


def blahut_arimoto(W, *, tol: float = 1e-12, max_iter: int = 100_000) -> CapacityResult:
    """Capacity ``C = max_{r in simplex} sum_k r_k KL(W_k || r W)`` of the channel ``W``.

    The Blahut-Arimoto iteration ``r_k <- r_k exp(KL(W_k || q)) / Z`` with ``q = r W``,
    run in log space. Every iterate brackets the capacity:
    ``log sum_k r_k exp(KL(W_k || q)) <= C <= max_k KL(W_k || q)`` (the lower bound is
    ``log Z``, the upper bound Gallager's minimax characterisation
    ``C = min_q max_k KL(W_k || q)``), and the iteration stops when the bracket is
    narrower than ``tol``.

    Parameters
    ----------
    W : array_like (p, n)
        Rows are distributions over outputs: ``W[k]`` is the output law given input k.
        With perfect experts (``P = D``) the robust minimax value equals this capacity.
    tol : float
        Target width of the bracket in nats.
    max_iter : int

    Returns
    -------
    CapacityResult
    """
    start = time.perf_counter()
    tol = check_tol(tol)
    W = as_distributions(W, "channel")
    p = W.shape[0]
    log_r = np.full(p, -np.log(p))
    lower = upper = 0.0
    for it in range(1, max_iter + 1):
        q = np.exp(log_r) @ W
        div = kl(W, q)
        upper = float(div.max())
        log_z = float(logsumexp(log_r + div))
        lower = log_z
        if upper - lower <= tol:
            break
        log_r = log_r + div - log_z
    # The bracket was computed at this input, so it is the one returned.
    r = np.exp(log_r)
    r /= r.sum()
    cert = Certificate.of(lower, upper, tol)
    warn_if_missed("blahut-arimoto", cert.status, cert.gap, tol, it)
    return CapacityResult(
        capacity=cert.lower,
        input=r,
        output=r @ W,
        gap=cert.gap,
        lower=cert.lower,
        upper=cert.upper,
        iterations=it,
        seconds=time.perf_counter() - start,
        status=cert.status,
        tol=tol,
    )
