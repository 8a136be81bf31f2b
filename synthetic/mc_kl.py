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

Two lower-variance per-sample estimates of ``KL(D_k || q)`` (both unbiased):

- Rao-Blackwellised, for a q whose next-token laws ``q(. | x_<t)`` are known (an
  autoregressive model, or a sequence-level mixture of such with constant weights):
  ``b(x) = sum_t KL(D_k(. | x_<t) || q(. | x_<t))`` (:func:`next_token_kl`), the
  conditional expectation of the log-ratio given the prefixes; the noise of the token
  drawn at each step is integrated out exactly.
- Control variate, for a q that does not factor step by step (a sequence gate):
  ``e(x) = log D_k(x) - log q(x) - beta (Y(x) - b_f(x))`` with
  ``Y = log D_k - log f`` for a reference f that factors, whose ``Y - b_f`` has mean
  zero (:func:`control_variate`); ``beta`` is the least-squares coefficient.
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


def mean_se(values) -> tuple[float, float]:
    """Sample mean and its standard error ``s / sqrt(n)`` of a 1-D array of i.i.d. estimates."""
    r = np.asarray(values, dtype=np.float64)
    if r.ndim != 1 or r.size < 2:
        raise ShapeMismatchError(f"need at least two samples' estimates as a 1-D array, got shape {r.shape}")
    return float(r.mean()), float(r.std(ddof=1) / np.sqrt(r.size))


def log_ratio_kl(log_d, log_q) -> tuple[float, float]:
    """Sample mean and standard error of ``log D(x) - log q(x)`` over samples ``x ~ D``."""
    return mean_se(np.asarray(log_d, dtype=np.float64) - np.asarray(log_q, dtype=np.float64))


def next_token_kl(log_d_next, log_q_next) -> np.ndarray:
    """``b(x) = sum_t sum_v D(v | x_<t) [log D(v | x_<t) - log q(v | x_<t)]`` per sample.

    log_d_next, log_q_next : (m x T x V) next-token log-probabilities at each sample's
    prefixes. With ``x ~ D``, ``E[b(x)] = KL(D || q)`` (chain rule) and ``b`` is the
    conditional expectation of ``log D(x) - log q(x)`` given the prefixes, so its
    variance is never larger. Returns (m,) float64.
    """
    ld, lq = np.asarray(log_d_next, dtype=np.float64), np.asarray(log_q_next, dtype=np.float64)
    if ld.shape != lq.shape or ld.ndim != 3:
        raise ShapeMismatchError(f"need two (m x T x V) arrays of one shape, got {ld.shape} and {lq.shape}")
    return np.einsum("mtv,mtv->m", np.exp(ld), ld - lq)


def sequence_log_prob(log_next, seqs) -> np.ndarray:
    """``log q(x) = sum_t log q(x_t | x_<t)`` from (m x T x V) next-token log-probabilities; (m,)."""
    seqs = np.asarray(seqs)
    return np.take_along_axis(np.asarray(log_next, dtype=np.float64), seqs[:, :, None], axis=2)[:, :, 0].sum(axis=1)


def mixture_next_log_probs(log_w, log_next, seqs) -> np.ndarray:
    """Next-token log-laws of the sequence-level mixture ``sum_k w_k q_k``, (m x T x V).

    ``log_next`` (p x m x T x V) holds each component's; the mixture's law at position
    t is ``sum_k w_k(x_<t) q_k(. | x_<t)`` with ``w_k(x_<t)`` proportional to
    ``w_k q_k(x_<t)`` (Bayes), so a constant-weight mixture factors step by step.
    """
    lq = np.asarray(log_next, dtype=np.float64)
    seqs = np.asarray(seqs)
    tok = np.take_along_axis(lq, np.broadcast_to(seqs[None, :, :, None], lq.shape[:3] + (1,)), axis=3)[..., 0]
    prefix = np.concatenate([np.zeros(tok.shape[:2] + (1,)), np.cumsum(tok[:, :, :-1], axis=2)], axis=2)
    post = np.asarray(log_w, dtype=np.float64)[:, None, None] + prefix
    # logaddexp.reduce: a ufunc, several times faster than scipy's logsumexp on these shapes.
    post = post - np.logaddexp.reduce(post, axis=0, keepdims=True)
    return np.logaddexp.reduce(post[..., None] + lq, axis=0)


def stratified_mean_se(values, strata, masses, complete=None) -> tuple[float, float]:
    """``sum_c d_c mean_c(f)`` and its standard error ``sqrt(sum_c d_c^2 s_c^2 / n_c)``.

    values : (m,) per-sample estimates; strata : (m,) stratum index of each sample;
    masses : (C,) probability of each stratum under the target law; complete : (C,)
    bool, strata whose samples are all of their (equally likely) members, so that their
    mean is exact. Every other stratum of positive mass needs at least two samples.
    """
    v = np.asarray(values, dtype=np.float64)
    s = np.asarray(strata)
    d = np.asarray(masses, dtype=np.float64)
    if v.shape != s.shape or v.ndim != 1:
        raise ShapeMismatchError(f"need (m,) values and (m,) strata, got {v.shape} and {s.shape}")
    n = np.bincount(s, minlength=d.size)
    complete = np.zeros(d.size, bool) if complete is None else np.asarray(complete, bool)
    if n.size != d.size or ((d > 0) & (n < 2) & ~complete).any():
        raise ShapeMismatchError(f"every stratum of positive mass needs >= 2 samples; counts {n.tolist()}")
    size = np.maximum(n, 1)
    mean = np.bincount(s, v, minlength=d.size) / size
    var = np.where(complete, 0.0, np.bincount(s, (v - mean[s]) ** 2, minlength=d.size) / np.maximum(n - 1, 1))
    return float(d @ mean), float(np.sqrt(d**2 @ (var / size)))


def sample_kl(estimates: list, *, strata=None, masses=None, complete=None, log_z: float = 0.0,
              log_z_se: float = 0.0) -> DomainKL:
    """:class:`DomainKL` from per-domain arrays of per-sample unbiased estimates of ``KL(D_k || q)``.

    Plain means over i.i.d. samples of each ``D_k``, or with ``strata`` (one array shared
    by every domain) and ``masses`` (p x C, each domain's stratum probabilities) the
    stratified means of :func:`stratified_mean_se`.
    """
    if strata is None:
        stats = np.array([mean_se(e) for e in estimates])
    else:
        stats = np.array([stratified_mean_se(e, strata, d, complete) for e, d in zip(estimates, masses)])
    return DomainKL(stats[:, 0] + log_z, stats[:, 1], float(log_z_se), int(min(len(e) for e in estimates)))


def domain_kl(log_d: list, log_q: list, *, log_z: float = 0.0, log_z_se: float = 0.0) -> DomainKL:
    """:class:`DomainKL` from per-domain sample log-probabilities of the domain and of q.

    ``log_z`` (with standard error ``log_z_se``) is added to every domain's KL: the
    normalised model ``q / Z`` of an unnormalised q.
    """
    return sample_kl([np.asarray(d, dtype=np.float64) - np.asarray(q, dtype=np.float64) for d, q in zip(log_d, log_q)],
                     log_z=log_z, log_z_se=log_z_se)


def exact_domain_kl(kls) -> DomainKL:
    """:class:`DomainKL` of exactly known per-domain KLs (standard errors zero)."""
    kls = np.asarray(kls, dtype=np.float64)
    return DomainKL(kls, np.zeros_like(kls))
