"""Claims about fixed mixtures and static gates: Prop. 2, the JSD identity, Thm 14."""

from __future__ import annotations

import numpy as np

from theory.bounds import expert_errors, fixed_mixture_bound, static_barrier, static_weights
from theory.claims import solvers
from theory.claims.instances import Instance
from theory.claims.record import ABS_TOL, EQUAL, IDENTITY, LOWER, UPPER, Check, tightened, tightened_name
from theory.divergences import entropy, jsd, kl, mixture


def check_prop2(inst: Instance, lams) -> list[Check]:
    """Prop. 2: ``KL(D_lam || sum_k lam_k pi_k) <= sum_k lam_k eps_k`` for each ``lam``.

    Both sides are closed form; the inequality is the joint convexity of KL. At a vertex
    ``lam = e_k`` both sides are ``eps_k`` by definition, so those checks are identities;
    the false variant (the bound lowered by 10%) is rejected where the bound is attained
    at an interior lam (disjoint experts: no cross terms, equality).
    """
    eps = expert_errors(inst.D, inst.P)
    out = []
    for lam in np.atleast_2d(lams):
        truth = kl(mixture(lam, inst.D), mixture(lam, inst.P))
        bound = fixed_mixture_bound(lam, eps)
        if lam.max() == 1.0:
            out.append(Check("constant gate g = e_k: eps_k <= eps_k", UPPER, bound, truth, quantities={"lam": lam},
                             role=IDENTITY))
        else:
            out.append(Check("constant gate g = lam (interior lam)", UPPER, bound, truth, quantities={"lam": lam},
                             variant=tightened_name(UPPER), variant_bound=tightened(UPPER, bound)))
    return out


def check_jsd_identity(inst: Instance, lams, rng) -> list[Check]:
    """``KL(D_lam || pi) = sum_k lam_k KL(D_k || pi) - JSD_lam`` and ``0 <= JSD_lam <= H(lam)``.

    ``pi`` is a random full-support model (the identity holds for any model). All three
    are mathematical facts (identities of the code's formulas); their false variants
    (JSD dropped, a JSD 10% closer to H(lam), a JSD floor at a tenth of H(lam)) show
    that the checks would notice a wrong formula.
    """
    model = 0.5 * inst.P.mean(axis=0) + 0.5 * rng.dirichlet(np.ones(inst.n))
    per_domain = kl(inst.D, model)
    out = []
    for lam in np.atleast_2d(lams):
        js = jsd(lam, inst.D)
        rhs = float(lam @ per_domain) - js
        lhs = kl(mixture(lam, inst.D), model)
        q = {"lam": lam, "jsd": js}
        h = float(entropy(lam))
        out.append(Check("identity", EQUAL, rhs, lhs, tol=ABS_TOL * max(1.0, abs(lhs)), quantities=q, role=IDENTITY,
                         variant="JSD_lam term dropped", variant_bound=rhs + js))
        out.append(Check("JSD_lam <= H(lam)", UPPER, h, js, quantities=q, role=IDENTITY,
                         variant=tightened_name(UPPER), variant_bound=tightened(UPPER, h)))
        out.append(Check("JSD_lam >= 0", LOWER, 0.0, js, quantities=q, role=IDENTITY,
                         variant="JSD_lam >= H(lam) / 10", variant_bound=0.1 * h))
    return out


def experts_within_domains(inst: Instance) -> bool:
    """Whether domains are pairwise disjoint and each expert lives on its domain's support."""
    dsupp = inst.D > 0
    disjoint = (dsupp.sum(axis=0) <= 1).all()
    return bool(disjoint and not ((inst.P > 0) & ~dsupp).any())


def no_cross_domain_mass(D, P) -> bool:
    """Whether domains are pairwise disjoint and no expert puts mass on *another* domain's support.

    Mass on outcomes that no domain uses is allowed: there every ``D_k`` is zero, so it
    only lowers each expert's mass on its own support, which ``eps_k`` already counts.
    """
    dsupp = np.asarray(D) > 0
    P = np.asarray(P)
    if (dsupp.sum(axis=0) > 1).any():
        return False
    p = dsupp.shape[0]
    return bool(all(not (P[j, dsupp[k]] > 0).any() for k in range(p) for j in range(p) if j != k))


def check_thm14(inst: Instance) -> list[Check]:
    """Thm 14: for disjoint domains every static gate has worst-case KL >= ``log sum exp(eps)``.

    The true best static value ``min_w max_k KL(D_k || sum_j w_j pi_j)`` comes from the
    exact solver with the constant gate family; ``sigma = softmax(eps)`` is checked as
    its minimiser and as attaining the barrier. When no expert puts mass on another
    domain's support (:func:`no_cross_domain_mass`, the assumption recorded),
    ``KL(D_k || pi_w) = eps_k - log w_k`` and both parts are exact; the false variants
    (the floor raised by 10%, uniform weights as the best static gate) are rejected there.
    """
    eps = expert_errors(inst.D, inst.P)
    res = solvers.robust(inst.D, inst.P, family="constant")
    tol = ABS_TOL + res.gap
    sigma = static_weights(eps)
    at_sigma = float(kl(inst.D, mixture(sigma, inst.P)).max())
    at_uniform = float(kl(inst.D, inst.P.mean(axis=0)).max())
    barrier = static_barrier(eps)
    meets = no_cross_domain_mass(inst.D, inst.P)
    q = {"eps": eps, "best_static_value": res.value, "best_static_weights": res.gate[0], "lam_star": res.lam,
         "sigma": sigma, "worst_kl_at_sigma": at_sigma, "worst_kl_at_uniform": at_uniform, "gap": res.gap}
    return [
        Check("best static worst-case KL >= log sum exp(eps)", LOWER, barrier, res.value, tol, q, meets,
              variant=tightened_name(LOWER), variant_bound=tightened(LOWER, barrier)),
        Check("sigma = softmax(eps) is the best static gate", EQUAL, res.value, at_sigma, tol, q, meets,
              variant="uniform weights are the best static gate", variant_bound=res.value, variant_truth=at_uniform),
    ]
