"""Monte Carlo ``KL(D_k || q)`` with standard errors, and the KL of every mixture from them.

Problem: estimate ``KL(D_lam || q)`` for every mixture ``D_lam = sum_k lam_k D_k`` of
domains whose exact log-probabilities are known (and whose entropies are exact, e.g. by
:mod:`synthetic.conflict_exact`), for a model q that is only evaluable pointwise.

Cross-entropy is linear in lam, so
``KL(D_lam || q) = sum_k lam_k KL(D_k || q) - JSD_lam(D)`` with the exact
``JSD_lam = sum_k lam_k H(D_k) - H(D_lam)``. Each ``KL(D_k || q)`` is the sample mean of
the log-ratio ``log D_k(x) - log q(x)`` over ``x ~ D_k`` (the exact ``log D_k`` is a
control variate with known mean ``-H(D_k)``: the log-ratio varies far less than
``-log q(x)``). Independent samples per domain give
``SE(lam)^2 = sum_k lam_k^2 SE_k^2 + s^2``, where ``s`` is the standard error of a term
shared by every domain (``log Z`` of an unnormalised model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory.errors import ShapeMismatchError


@dataclass(frozen=True)
class DomainKL:
    """``KL(D_k || q)`` per domain with standard errors, plus a shared additive term's SE."""

    kl: np.ndarray
    se: np.ndarray
    shared_se: float = 0.0
    samples: int = 0

    def at(self, lams, jsd) -> tuple[np.ndarray, np.ndarray]:
        """``KL(D_lam || q)`` and its SE at each row of ``lams`` (m x p), given the exact ``JSD_lam`` (m,)."""
        lams = np.atleast_2d(np.asarray(lams, dtype=np.float64))
        jsd = np.asarray(jsd, dtype=np.float64).reshape(-1)
        if lams.shape[1] != self.kl.size or jsd.size != lams.shape[0]:
            raise ShapeMismatchError(f"need (m x {self.kl.size}) mixtures and m JSD values; got {lams.shape}, {jsd.shape}")
        value = lams @ self.kl - jsd
        se = np.sqrt((lams**2) @ (self.se**2) + self.shared_se**2)
        return value, se


def log_ratio_kl(log_d, log_q) -> tuple[float, float]:
    """Sample mean and standard error of ``log D(x) - log q(x)`` over samples ``x ~ D``."""
    r = np.asarray(log_d, dtype=np.float64) - np.asarray(log_q, dtype=np.float64)
    if r.ndim != 1 or r.size < 2:
        raise ShapeMismatchError(f"need at least two samples' log-ratios as a 1-D array, got shape {r.shape}")
    return float(r.mean()), float(r.std(ddof=1) / np.sqrt(r.size))


def domain_kl(log_d: list, log_q: list, *, log_z: float = 0.0, log_z_se: float = 0.0) -> DomainKL:
    """:class:`DomainKL` from per-domain sample log-probabilities of the domain and of q.

    ``log_z`` (with standard error ``log_z_se``) is added to every domain's KL: the
    normalised model ``q / Z`` of an unnormalised q.
    """
    stats = np.array([log_ratio_kl(d, q) for d, q in zip(log_d, log_q)])
    return DomainKL(stats[:, 0] + log_z, stats[:, 1], float(log_z_se), int(min(len(d) for d in log_d)))


def exact_domain_kl(kls) -> DomainKL:
    """:class:`DomainKL` of exactly known per-domain KLs (standard errors zero)."""
    kls = np.asarray(kls, dtype=np.float64)
    return DomainKL(kls, np.zeros_like(kls))
