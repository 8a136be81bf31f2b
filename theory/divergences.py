"""Divergences between discrete distributions, in nats, vectorised over rows.

Conventions: ``0 log 0 = 0``; ``KL(a || b) = +inf`` when ``a`` puts mass where ``b``
has none. All arithmetic is float64.
"""

from __future__ import annotations

import numpy as np
from scipy.special import entr, rel_entr


def kl(a, b) -> np.ndarray | float:
    """Kullback-Leibler divergence ``KL(a || b) = sum_x a(x) log(a(x) / b(x))``.

    Broadcasts over leading axes: ``a`` of shape (p, n) against ``b`` of shape (n,)
    gives the p divergences of each row to ``b``. A scalar is returned for 1-D inputs.
    """
    out = rel_entr(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)).sum(axis=-1)
    return out if np.ndim(out) else float(out)


def kl_log(log_a, log_b) -> np.ndarray | float:
    """``KL(a || b) = sum_x a(x) (log a(x) - log b(x))`` from log-probabilities, ``a = exp(log_a)``.

    For models given in log space (where ``b`` may underflow in float64 while its
    log-probability is finite). An outcome with ``a(x) = 0`` contributes nothing (``0 log 0 = 0``);
    ``+inf`` where ``log_b = -inf`` on ``a``'s support. Broadcasts like :func:`kl`; both
    are taken as normalised (renormalise ``log_a`` first when it is not).
    """
    la = np.asarray(log_a, dtype=np.float64)
    lb = np.asarray(log_b, dtype=np.float64)
    a = np.exp(la)
    with np.errstate(invalid="ignore"):
        terms = np.where(a > 0, a * (np.where(a > 0, la, 0.0) - lb), 0.0)
    out = terms.sum(axis=-1)
    return out if np.ndim(out) else float(out)


def entropy(a) -> np.ndarray | float:
    """Shannon entropy ``H(a) = -sum_x a(x) log a(x)`` of each row."""
    out = entr(np.asarray(a, dtype=np.float64)).sum(axis=-1)
    return out if np.ndim(out) else float(out)


def mixture(lam, D) -> np.ndarray:
    """The mixture ``D_lam = sum_k lam_k D_k`` of the rows of ``D`` (p x n)."""
    return np.asarray(lam, dtype=np.float64) @ np.asarray(D, dtype=np.float64)


def jsd(lam, D) -> float:
    """Lambda-weighted Jensen-Shannon divergence ``sum_k lam_k KL(D_k || D_lam)``.

    Satisfies ``0 <= JSD_lam <= H(lam)``; domains with ``lam_k = 0`` do not count.
    """
    lam = np.asarray(lam, dtype=np.float64)
    D = np.asarray(D, dtype=np.float64)
    active = lam > 0
    Dl = mixture(lam, D)
    return float(lam[active] @ kl(D[active], Dl))


def cross_entropy(a, b) -> np.ndarray | float:
    """Cross-entropy ``-sum_x a(x) log b(x)`` (``+inf`` where ``b`` misses ``a``'s support)."""
    a = np.asarray(a, dtype=np.float64)
    return kl(a, b) + entropy(a)
