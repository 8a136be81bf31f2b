"""The paper's bounds as plain formulas on finite instances (nats).

Every function evaluates one side of a claim of Cortes, Mohri and Zhong (2026):
the right-hand side of an inequality, given the quantities it depends on. The
claims audit (:mod:`theory.claims`) compares them with the true quantities.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog
from scipy.special import logsumexp, softmax

from theory.divergences import entropy, jsd, kl
from theory.gates import pointwise_hull
from theory.prior import PriorSet


def expert_errors(D, P) -> np.ndarray:
    """Expert qualities ``eps_k = KL(D_k || pi_k)`` (one per domain)."""
    D = np.asarray(D, dtype=np.float64)
    P = np.asarray(P, dtype=np.float64)
    return np.array([kl(D[k], P[k]) for k in range(D.shape[0])])


def fixed_mixture_bound(lam, eps) -> float:
    """Prop. 2: ``KL(D_lam || sum_k lam_k pi_k) <= sum_k lam_k eps_k``; returns the right side."""
    return float(np.asarray(lam, dtype=np.float64) @ np.asarray(eps, dtype=np.float64))


def static_barrier(eps) -> float:
    """Thm 14: ``log sum_k exp(eps_k)``, the best worst-case KL of a static gate (disjoint case)."""
    return float(logsumexp(np.asarray(eps, dtype=np.float64)))


def static_weights(eps) -> np.ndarray:
    """Thm 14: the best static weights ``sigma = softmax(eps)``."""
    return softmax(np.asarray(eps, dtype=np.float64))


def sigma_conditional_entropy(D, P, lam_star, sigma) -> float:
    """``H_sigma^{lam*}(K|X) = sum_k lam*_k E_{x~D_k}[-log(sigma_k pi_k(x) / pi_sigma(x))]``.

    The expected negative log posterior of the true expert under the static mixture
    ``pi_sigma = sum_k sigma_k pi_k``; computed in log space, only where ``D_k > 0``.
    """
    D = np.asarray(D, dtype=np.float64)
    P = np.asarray(P, dtype=np.float64)
    lam_star = np.asarray(lam_star, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_joint = np.log(sigma)[:, None] + np.log(P)
    log_mix = logsumexp(log_joint, axis=0)
    neg_log_post = np.where(D > 0, log_mix[None, :] - log_joint, 0.0)
    per_domain = (D * neg_log_post).sum(axis=1)
    active = lam_star > 0
    return float(lam_star[active] @ per_domain[active])


def robust_bound(D, P, lam, lam_star) -> float:
    """Thm 3: ``log sum_k exp(eps_k) - H_sigma^{lam*}(K|X) - JSD_lam``.

    An upper bound on ``KL(D_lam || pi_{g*})`` for the robust gate ``g*`` and every
    ``lam``; ``lam_star`` is the least-favourable mixture.
    """
    eps = expert_errors(D, P)
    sigma = static_weights(eps)
    return static_barrier(eps) - sigma_conditional_entropy(D, P, lam_star, sigma) - jsd(lam, D)


def disjoint_regime_bound(eps, lam) -> float:
    """Thm 3, disjoint experts: ``log sum_k exp(eps_k) - H(lam)``."""
    return static_barrier(eps) - float(entropy(np.asarray(lam, dtype=np.float64)))


def identical_regime_bound(eps, lam_star, lam, D) -> float:
    """Thm 3 with identical experts (``pi_k = pi``): ``sum_k lam*_k eps_k - JSD_lam``.

    This is also the direct derivation for fully overlapping experts with unequal errors.
    """
    return fixed_mixture_bound(lam_star, eps) - jsd(lam, D)


def ensemble_summary_formula(eps) -> float:
    """The paper's summary for fully overlapping experts: ``sum_k sigma_k eps_k``, sigma = softmax(eps)."""
    eps = np.asarray(eps, dtype=np.float64)
    return float(static_weights(eps) @ eps)


def hausdorff_to_simplex(prior: PriorSet) -> float:
    """L1 Hausdorff distance ``max_{lam in simplex} min_{mu in Lambda} ||lam - mu||_1``.

    ``Lambda`` is a subset of the simplex, so the distance is the larger one-sided
    deviation; the distance to a convex set is convex, so the max over the simplex is
    reached at a vertex ``e_k``: p linear programs
    ``min sum_j t_j  s.t. -t <= mu - e_k <= t, mu in Lambda``.
    """
    p = prior.p
    lo, hi = prior.bounds()
    eye = np.eye(p)
    # variables (mu, t); |mu - e_k| <= t as two blocks of linear inequalities
    c = np.concatenate([np.zeros(p), np.ones(p)])
    A_abs = np.block([[eye, -eye], [-eye, -eye]])
    A_poly = None if prior.A is None else np.hstack([prior.A, np.zeros_like(prior.A)])
    A_eq = np.concatenate([np.ones(p), np.zeros(p)])[None, :]
    bounds = list(zip(lo, hi)) + [(0, None)] * p
    worst = 0.0
    for k in range(p):
        b_abs = np.concatenate([eye[k], -eye[k]])
        A_ub = A_abs if A_poly is None else np.vstack([A_abs, A_poly])
        b_ub = b_abs if A_poly is None else np.concatenate([b_abs, prior.b])
        res = linprog(c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=[1.0], bounds=bounds, method="highs")
        worst = max(worst, float(res.fun))
    return worst


def prior_lipschitz_bound(kl_at_restricted_gate, distance_l1) -> float:
    """Thms 4-5: ``V(simplex) - V(Lambda) <= L * d_H(Lambda, simplex)`` with the derived L.

    For the linearised game ``sum_k lam_k KL(D_k || q)``, moving ``lam`` by ``delta``
    in L1 with ``sum delta = 0`` changes the loss by at most
    ``||delta||_1 * (max_k c_k - min_k c_k) / 2`` where ``c_k = KL(D_k || q_Lambda)``
    at the restricted robust gate, so ``L = spread(c) / 2``.
    """
    c = np.asarray(kl_at_restricted_gate, dtype=np.float64)
    return float(distance_l1 * (c.max() - c.min()) / 2.0)


def hull_lipschitz_constant(D, P) -> float:
    """Thms 4-5 with an a-priori constant: ``L = (max_k U_k - min_k L_k) / 2``.

    Every gated model q satisfies ``l <= q <= u`` pointwise (``l = min_j pi_j``,
    ``u = max_j pi_j``) and has mass one, so ``c_k(q) = KL(D_k || q)`` lies in
    ``[L_k, U_k]`` with ``U_k = sum_x D_k log(D_k / l)`` and
    ``L_k = max(0, sum_x D_k log(D_k / u))``. Hence ``lam -> lam . c(q)`` is
    ``spread(c(q)) / 2 <= L`` Lipschitz in L1 on the simplex for every q, and the value
    ``min_q max_{lam in Lambda} lam . c(q)`` moves by at most ``L d_H`` between prior
    sets. Infinite when some expert-free outcome (``l = 0``) carries domain mass.
    """
    D = np.asarray(D, dtype=np.float64)
    lo, hi = pointwise_hull(P)
    with np.errstate(divide="ignore", invalid="ignore"):
        upper = np.where(D > 0, D * (np.log(np.where(D > 0, D, 1.0)) - np.log(lo)), 0.0).sum(axis=1)
        lower = np.where(D > 0, D * (np.log(np.where(D > 0, D, 1.0)) - np.log(hi)), 0.0).sum(axis=1)
    return float((upper.max() - np.maximum(lower, 0.0).min()) / 2.0)


def expert_constants(P, support=None) -> tuple[float, float]:
    """Thm 9 constants ``M = max |log pi_k(x)|`` and ``C = max_x ||(pi_1(x)..pi_p(x))||_2``.

    ``support`` (boolean mask) restricts the max to the outcomes that can be sampled.
    """
    P = np.asarray(P, dtype=np.float64)
    if support is not None:
        P = P[:, np.asarray(support, dtype=bool)]
    with np.errstate(divide="ignore"):
        M = float(np.abs(np.log(P)).max())
    C = float(np.sqrt((P**2).sum(axis=0)).max())
    return M, C


def concentration_term(m, M, p, delta) -> np.ndarray:
    """Thm 9's concentration term ``M sqrt(log(p/delta) / (2 m_k))`` (Hoeffding with a union over k)."""
    m = np.asarray(m, dtype=np.float64)
    return M * np.sqrt(np.log(p / delta) / (2.0 * m))


def generalisation_bound(rademacher, m, M, C, p, delta) -> np.ndarray:
    """Thm 9 per domain: ``2 sqrt2 C e^M R_k(G) + M sqrt(log(p/delta) / (2 m_k))``.

    ``rademacher`` and ``m`` are per-domain arrays; the lam-weighted sum of the result is
    the theorem's bound on population minus empirical cross-entropy.
    """
    R = np.asarray(rademacher, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    return 2.0 * np.sqrt(2.0) * C * np.exp(M) * R + concentration_term(m, M, p, delta)


def partition_rademacher(sample_cells, n_cells: int, p: int, draws: int, rng) -> float:
    """Empirical Rademacher complexity of partition gates on one sample, by Monte Carlo.

    ``R = (1/m) E_sigma sup_W sum_i sum_j sigma_ij W[c(x_i), j]`` over cell weights W
    with rows in the simplex (the vector class of Maurer's contraction, without the
    mass constraint, hence an upper bound for G1's partition gates). For one draw the
    sup is exact: ``sum_c max_j S[c, j]`` with ``S[c, j]`` the sum of ``sigma_ij`` over
    the sample points in cell c.
    """
    cells = np.asarray(sample_cells, dtype=np.intp)
    m = cells.shape[0]
    sigma = rng.choice(np.array([-1.0, 1.0]), size=(draws, m, p))
    onehot = np.eye(n_cells)[cells]
    S = np.einsum("dmj,mc->dcj", sigma, onehot)
    return float(S.max(axis=2).sum(axis=1).mean() / m)


def algorithm1_rate(p: int, T) -> np.ndarray:
    """The reference rate ``sqrt(log p / T)`` of Algorithm 1 (constants omitted)."""
    return np.sqrt(np.log(p) / np.asarray(T, dtype=np.float64))
