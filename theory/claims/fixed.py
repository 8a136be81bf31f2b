"""Claims about fixed mixtures and static gates: Prop. 2, the JSD identity, Thm 14."""

from __future__ import annotations

import numpy as np

from theory.bounds import expert_errors, fixed_mixture_bound, static_barrier, static_weights
from theory.claims import solvers
from theory.claims.instances import Instance
from theory.claims.record import ABS_TOL, EQUAL, LOWER, UPPER, Check
from theory.divergences import entropy, jsd, kl, mixture


def check_prop2(inst: Instance, lams) -> list[Check]:
    """Prop. 2: ``KL(D_lam || sum_k lam_k pi_k) <= sum_k lam_k eps_k`` for each ``lam``.

    Both sides are closed form; the inequality is the joint convexity of KL.
    """
    eps = expert_errors(inst.D, inst.P)
    out = []
    for lam in np.atleast_2d(lams):
        truth = kl(mixture(lam, inst.D), mixture(lam, inst.P))
        out.append(Check("constant gate g = lam", UPPER, fixed_mixture_bound(lam, eps), truth, quantities={"lam": lam}))
    return out


def check_jsd_identity(inst: Instance, lams, rng) -> list[Check]:
    """``KL(D_lam || pi) = sum_k lam_k KL(D_k || pi) - JSD_lam`` and ``0 <= JSD_lam <= H(lam)``.

    ``pi`` is a random full-support model (the identity holds for any model).
    """
    model = 0.5 * inst.P.mean(axis=0) + 0.5 * rng.dirichlet(np.ones(inst.n))
    per_domain = kl(inst.D, model)
    out = []
    for lam in np.atleast_2d(lams):
        js = jsd(lam, inst.D)
        rhs = float(lam @ per_domain) - js
        lhs = kl(mixture(lam, inst.D), model)
        q = {"lam": lam, "jsd": js}
        out.append(Check("identity", EQUAL, rhs, lhs, tol=ABS_TOL * max(1.0, abs(lhs)), quantities=q))
        out.append(Check("JSD_lam <= H(lam)", UPPER, entropy(lam), js, quantities=q))
        out.append(Check("JSD_lam >= 0", LOWER, 0.0, js, quantities=q))
    return out


def experts_within_domains(inst: Instance) -> bool:
    """Whether domains are pairwise disjoint and each expert lives on its domain's support."""
    dsupp = inst.D > 0
    disjoint = (dsupp.sum(axis=0) <= 1).all()
    return bool(disjoint and not ((inst.P > 0) & ~dsupp).any())


def check_thm14(inst: Instance) -> list[Check]:
    """Thm 14: for disjoint domains every static gate has worst-case KL >= ``log sum exp(eps)``.

    The true best static value ``min_w max_k KL(D_k || sum_j w_j pi_j)`` comes from the
    exact solver with the constant gate family; ``sigma = softmax(eps)`` is checked as
    its minimiser and as attaining the barrier.
    """
    eps = expert_errors(inst.D, inst.P)
    res = solvers.robust(inst.D, inst.P, family="constant")
    tol = ABS_TOL + res.gap
    sigma = static_weights(eps)
    at_sigma = float(kl(inst.D, mixture(sigma, inst.P)).max())
    barrier = static_barrier(eps)
    meets = experts_within_domains(inst)
    q = {"eps": eps, "best_static_value": res.value, "best_static_weights": res.gate[0], "lam_star": res.lam,
         "sigma": sigma, "worst_kl_at_sigma": at_sigma, "gap": res.gap}
    return [
        Check("best static worst-case KL >= log sum exp(eps)", LOWER, barrier, res.value, tol, q, meets),
        Check("sigma = softmax(eps) is the best static gate", EQUAL, res.value, at_sigma, tol, q, meets),
    ]
