"""Causal routers over experts on an enumerated sequence space (structural distillation).

A causal router ``gamma(k | x_<t)`` (a distribution over the p experts for each prefix)
defines the routed model

    rho_gamma(x) = prod_t sum_k gamma(k | x_<t) pi_k(x_t | x_<t),

which, unlike the gated model ``pi_g(x) = sum_k g(x, k) pi_k(x)``, is autoregressive.
Everything here works on arrays: ``tokens`` (S x T integers, each sequence of the space
once), per-token expert log-probabilities ``token_logp[s, t, k] = log pi_k(x_t | x_<t)``
(S x T x p), and routers read along every sequence, ``router[s, t, k] = gamma(k | x_<t)``
(S x T x p; sequences sharing a prefix share the row).

- :func:`bayes_router`: the posterior over experts given the prefix under the joint
  ``g(x, k) pi_k(x)``;
- :func:`optimal_router`: the router minimising ``KL(q || rho_gamma)`` for a target q
  (the gated model, or any distribution on the sequences), with a certificate;
- :func:`routed_log_prob`, :func:`router_divergence`, :func:`router_tv`.

numpy only; :mod:`modular.distill` trains a router with torch and scores it with these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from theory.errors import InvalidOptionError, ShapeMismatchError
from theory.options import check_tol
from theory.result import Certificate, warn_if_missed


def check_sequences(tokens, token_logp) -> tuple[np.ndarray, np.ndarray]:
    """``tokens`` as (S x T) int64 and ``token_logp`` as (S x T x p) float64, or a clear error."""
    tok = np.asarray(tokens)
    lp = np.asarray(token_logp, dtype=np.float64)
    if tok.ndim != 2 or lp.ndim != 3 or lp.shape[:2] != tok.shape:
        raise ShapeMismatchError(
            f"tokens must be (S x T) and per-token log-probs (S x T x p); got {tok.shape} and {lp.shape}"
        )
    if np.isnan(lp).any() or (lp == np.inf).any():
        s, t, k = np.argwhere(np.isnan(lp) | (lp == np.inf))[0]
        raise InvalidOptionError(f"per-token log-prob of sequence {s}, position {t}, expert {k} is NaN or +inf")
    return tok.astype(np.int64), lp


def prefix_groups(tokens) -> list[np.ndarray]:
    """For t = 0..T: the id of each sequence's prefix ``x_<t`` among the distinct prefixes.

    Ids follow the lexicographic order of the prefixes (``np.unique``), so on a
    lexicographic enumeration of ``{0..V-1}^T`` the prefix id at length t is ``s // V^(T-t)``.
    """
    tok = np.asarray(tokens)
    S, T = tok.shape
    groups = [np.zeros(S, dtype=np.int64)]
    for t in range(1, T + 1):
        _, inv = np.unique(tok[:, :t], axis=0, return_inverse=True)
        groups.append(inv.reshape(-1))
    return groups


def _group_sum(values: np.ndarray, group: np.ndarray, size: int | None = None) -> np.ndarray:
    out = np.zeros(((group.max() + 1) if size is None else size,) + values.shape[1:])
    np.add.at(out, group, values)
    return out


def _normalised_weights(log_weights) -> np.ndarray:
    lw = np.asarray(log_weights, dtype=np.float64)
    return np.exp(lw - logsumexp(lw))


def routed_log_prob(router, token_logp) -> np.ndarray:
    """``log rho_gamma(x) = sum_t log sum_k gamma(k | x_<t) pi_k(x_t | x_<t)`` per sequence.

    ``router`` and ``token_logp`` are (S x T x p); the result is (S,).
    """
    with np.errstate(divide="ignore"):
        log_gamma = np.log(np.asarray(router, dtype=np.float64))
    return logsumexp(log_gamma + np.asarray(token_logp, dtype=np.float64), axis=2).sum(axis=1)


def bayes_router(tokens, token_logp, log_gate) -> np.ndarray:
    """The posterior over experts given the prefix, read along every sequence.

    ``gamma_B(k | h) = sum_{x: x_<t = h} g(x, k) pi_k(x) / sum_{x: x_<t = h} pi_g(x)``
    under the joint ``g(x, k) pi_k(x)`` (``log pi_k(x) = sum_t token_logp[x, t, k]``),
    marginalised over the continuations of each prefix h.

    Parameters
    ----------
    tokens : (S x T) int array
        All sequences of the space (each once).
    token_logp : (S x T x p) array
        ``log pi_k(x_t | x_<t)``.
    log_gate : (S x p) array
        ``log g(x, k)``.

    Returns
    -------
    (S x T x p) array: ``gamma_B(k | x_<t)`` for each sequence x and position t.
    """
    tok, lp = check_sequences(tokens, token_logp)
    lg = np.asarray(log_gate, dtype=np.float64)
    if lg.shape != (tok.shape[0], lp.shape[2]):
        raise ShapeMismatchError(f"log_gate must be (S x p) = {(tok.shape[0], lp.shape[2])}, got {lg.shape}")
    log_joint = lg + lp.sum(axis=1)
    joint = np.exp(log_joint - log_joint.max())
    groups = prefix_groups(tok)
    out = np.empty(lp.shape)
    for t in range(tok.shape[1]):
        mass = _group_sum(joint, groups[t])[groups[t]]
        out[:, t] = mass / mass.sum(axis=1, keepdims=True)
    return out


def router_divergence(log_weights, reference, router) -> float:
    """``sum_t E_{x ~ w}[KL(reference(. | x_<t) || router(. | x_<t))]`` on an enumerated space.

    ``w = exp(log_weights)`` renormalised (the gated model, for the right-hand side of
    the distillation identity of Thm 18 with ``reference`` the Bayes router); routers
    (S x T x p). ``0 log 0 = 0``; ``+inf`` where the router misses the reference's support.
    """
    w = _normalised_weights(log_weights)
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(router, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(a > 0, a * (np.log(a) - np.log(b)), 0.0).sum(axis=2)
    return float(np.einsum("s,st->", w, terms))


def router_tv(log_weights, reference, router) -> float:
    """``(1/T) sum_t E_{x ~ w}[TV(reference(. | x_<t), router(. | x_<t))]``, TV = half the L1 distance.

    The total-variation distance between two routers averaged over positions, under the
    renormalised ``w = exp(log_weights)``; routers (S x T x p).
    """
    w = _normalised_weights(log_weights)
    tv = 0.5 * np.abs(np.asarray(reference, dtype=np.float64) - np.asarray(router, dtype=np.float64)).sum(axis=2)
    return float(w @ tv.mean(axis=1))


@dataclass(frozen=True)
class MixtureWeights:
    """Maximum-likelihood mixture weights of a batch of problems, with their certificates.

    ``weights`` (H x p); ``certificate`` (H,): ``log max_k r_k`` at the returned weights,
    an upper bound on ``KL(t_h || f_h) - min`` for each problem h; ``iterations`` run.
    """

    weights: np.ndarray
    certificate: np.ndarray
    iterations: int


def mixture_weights(target, components, parent, start, *, mass=None, tol: float = 1e-10,
                    max_iter: int = 20000) -> MixtureWeights:
    """``w_h = argmin_{w in simplex} KL(t_h || sum_k w_k c_k)`` for a ragged batch of problems h, by EM.

    Problem h owns the rows c with ``parent[c] = h``: the target mass ``target[c]`` (rows
    of one problem sum to one) and the components' values ``components[c, k]``. The EM
    map is Cover's multiplicative update ``w_k <- w_k r_k`` with
    ``r_k = sum_{c in h} t_c c_k(c) / f(c)``, ``f = sum_k w_k c_k``; by concavity of the
    log, ``KL(t || f) - min_w KL(t || f_w) <= log max_k r_k`` (the certificate). Plain EM
    is slow (sublinear) where the optimum is on the simplex's boundary, so each
    iteration is a SQUAREM step (Varadhan & Roland 2008): two EM maps, an extrapolation
    along them (a weight may shrink a thousandfold per step, never to zero), one more
    EM map, and the plain two-map point instead wherever the extrapolation lowers the
    likelihood. It stops when ``mass @ certificate <= tol`` (``mass``: a weight per
    problem, default one each) or after ``max_iter`` EM maps; problems of zero mass keep
    ``start``.

    Parameters
    ----------
    target : (C,) array
    components : (C x p) array
    parent : (C,) int array with values in ``0..H-1``
    start : (H x p) array of starting weights (rows in the open simplex where mass > 0)
    """
    target = np.asarray(target, dtype=np.float64)
    comps = np.asarray(components, dtype=np.float64)
    w = np.array(start, dtype=np.float64)
    H = w.shape[0]
    m = np.ones(H) if mass is None else np.asarray(mass, dtype=np.float64)
    live = m > 0

    def em(w):
        """The EM map at w, its ratios r and the log-likelihood of each problem."""
        mix = np.einsum("ck,ck->c", w[parent], comps)
        ratio = np.where(target > 0, target / np.where(mix > 0, mix, 1.0), 0.0)
        r = _group_sum(ratio[:, None] * comps, parent, H)
        with np.errstate(divide="ignore"):
            loglik = _group_sum(np.where(target > 0, target * np.log(np.where(mix > 0, mix, 0.0)), 0.0), parent, H)
        new = w * r
        new = np.where(live[:, None], new / new.sum(axis=1, keepdims=True).clip(1e-300), w)
        return new, r, loglik

    it = 0
    while True:
        w1, r, _ = em(w)
        with np.errstate(divide="ignore"):
            cert = np.where(live, np.maximum(np.log(r.max(axis=1)), 0.0), 0.0)
        if m @ cert <= tol or it >= max_iter:
            break
        w2, _, _ = em(w1)
        step, curve = w1 - w, w2 - 2 * w1 + w
        norm_curve = np.linalg.norm(curve, axis=1)
        alpha = np.where(norm_curve > 0, -np.linalg.norm(step, axis=1) / np.where(norm_curve > 0, norm_curve, 1.0),
                         -1.0)
        alpha = np.minimum(alpha, -1.0)[:, None]
        jump = np.maximum(w - 2 * alpha * step + alpha**2 * curve, 1e-3 * w2)
        jump /= jump.sum(axis=1, keepdims=True)
        w_jump, _, ll_jump = em(jump)
        w_plain, _, ll_plain = em(w2)
        w = np.where((ll_jump >= ll_plain)[:, None], w_jump, w_plain)
        it += 4
    return MixtureWeights(w, cert, it)


@dataclass(frozen=True)
class OptimalRouter:
    """The router minimising ``KL(q || rho_gamma)`` and its certificate.

    Attributes
    ----------
    router : (S x T x p) array
    value : float
        ``KL(q || rho_gamma)`` at ``router`` (nats; q renormalised).
    gap : float
        Certified bound on ``value - min_gamma KL(q || rho_gamma)``: the sum over
        prefixes h of ``q(h) log max_k r_k(h)`` (see :func:`mixture_weights`).
    status : str
        ``"optimal"`` when ``gap <= tol``, otherwise ``"not_converged"``.
    iterations : int
        EM iterations, summed over the T positions.
    tol : float
    """

    router: np.ndarray
    value: float
    gap: float
    status: str
    iterations: int
    tol: float


def optimal_router(tokens, token_logp, log_target, *, start=None, tol: float = 1e-10,
                   max_iter: int = 20000) -> OptimalRouter:
    """The causal router minimising ``KL(q || rho_gamma)`` exactly, per prefix, with a certificate.

    By the chain rule ``KL(q || rho_gamma) = sum_t sum_h q(h) KL(q(. | h) || f_h)`` with
    ``f_h(v) = sum_k gamma_k(h) pi_k(v | h)``: the problem splits over prefixes h, each a
    maximum-likelihood problem for mixture weights solved by :func:`mixture_weights`
    (EM, vectorised over the prefixes of each length) to a certified total gap of ``tol``.

    Parameters
    ----------
    tokens, token_logp
        As for :func:`bayes_router`.
    log_target : (S,) array
        ``log q(x)`` up to a constant (e.g. the gated model ``log pi_g(x)``; ``-inf``
        allowed).
    start : (S x T x p) array, optional
        Starting router (e.g. the Bayes router); uniform by default. Prefixes of zero
        mass keep it.
    tol : float
        Requested certified gap (nats).
    max_iter : int
        EM iterations per position at most.

    Returns
    -------
    OptimalRouter (a :class:`~theory.result.ConvergenceWarning` when ``tol`` is missed)
    """
    tok, lp = check_sequences(tokens, token_logp)
    tol = check_tol(tol)
    if int(max_iter) < 0:
        raise InvalidOptionError(f"max_iter must be non-negative, got {max_iter!r}")
    S, T, p = lp.shape
    q = _normalised_weights(log_target)
    if q.shape != (S,):
        raise ShapeMismatchError(f"log_target must be (S,) = ({S},), got {np.shape(log_target)}")
    start = np.full(lp.shape, 1.0 / p) if start is None else np.asarray(start, dtype=np.float64)
    if start.shape != lp.shape:
        raise ShapeMismatchError(f"start must be (S x T x p) = {lp.shape}, got {start.shape}")
    groups = prefix_groups(tok)
    out = np.empty(lp.shape)
    value = gap = 0.0
    iterations = 0
    for t in range(T):
        parent, child = groups[t], groups[t + 1]
        # One row per (prefix, next token): its mass, its parent prefix, the experts' P(v | h).
        first = np.unique(child, return_index=True)[1]
        child_mass = _group_sum(q, child)
        child_parent = parent[first]
        child_p = np.exp(lp[first, t])
        parent_mass = _group_sum(child_mass, child_parent)
        cond = child_mass / np.where(parent_mass > 0, parent_mass, 1.0)[child_parent]
        fit = mixture_weights(cond, child_p, child_parent, start[np.unique(parent, return_index=True)[1], t],
                              mass=parent_mass, tol=tol / T, max_iter=max_iter)
        mix = np.einsum("ck,ck->c", fit.weights[child_parent], child_p)
        with np.errstate(divide="ignore"):
            value += float(np.sum(np.where(child_mass > 0, child_mass * (np.log(np.where(cond > 0, cond, 1.0))
                                                                          - np.log(mix)), 0.0)))
        gap += float(parent_mass @ fit.certificate)
        iterations += fit.iterations
        out[:, t] = fit.weights[parent]
    cert = Certificate.of(value - gap, value, tol)
    warn_if_missed("optimal_router", cert.status, gap, tol, iterations)
    return OptimalRouter(out, value, gap, cert.status, iterations, tol)
