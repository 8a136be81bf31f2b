"""Claims about the robust gate: Thm 3 and its regimes, the least-favourable mixture, Thms 4-5.

Each check solves the robust game exactly (certified gap) and compares the true
``KL(D_lam || pi_{g*})`` with the paper's bound; the certified gap widens the tolerance.
"""

from __future__ import annotations

import numpy as np

from theory.bounds import (
    disjoint_regime_bound,
    ensemble_summary_formula,
    expert_errors,
    hausdorff_to_simplex,
    identical_regime_bound,
    prior_lipschitz_bound,
    robust_bound,
)
from theory.claims import solvers
from theory.claims.fixed import experts_within_domains
from theory.claims.instances import Instance
from theory.claims.monolithic import ExponentialFamily, check_monolithic_weights
from theory.claims.record import ABS_TOL, EQUAL, LOWER, UPPER, Check
from theory.divergences import kl, mixture
from theory.prior import PriorSet

#: Mixture weights below this are treated as zero when reading the support of lam*.
SUPPORT_EPS = 1e-6


def _tol(res) -> float:
    return ABS_TOL + max(res.gap, 0.0)


def check_thm3(inst: Instance, lams) -> list[Check]:
    """Thm 3: ``KL(D_lam || pi_g*) <= log sum exp(eps) - H_sigma^{lam*}(K|X) - JSD_lam`` for every lam.

    Also checks that ``(lam*, g*)`` is a saddle point of the linearised game
    (``max_k KL(D_k || q*) = phi(lam*)`` up to the solver's tolerance).
    """
    res = solvers.robust(inst.D, inst.P)
    out = [Check("saddle point: max_k KL(D_k||q*) = phi(lam*)", EQUAL, res.lower, res.upper,
                 tol=ABS_TOL + 10 * res.tol, quantities={"lam_star": res.lam, "value": res.value})]
    for lam in np.atleast_2d(lams):
        truth = kl(mixture(lam, inst.D), res.q)
        bound = robust_bound(inst.D, inst.P, lam, res.lam)
        out.append(Check("KL(D_lam||pi_g*) <= Thm 3 bound", UPPER, bound, truth, _tol(res),
                         {"lam": lam, "lam_star": res.lam, "value": res.value}))
    return out


def check_thm3_regimes(inst: Instance, lams) -> list[Check]:
    """Thm 3 in its two closed-form regimes.

    Disjoint experts (domains disjoint, each expert on its domain's support):
    ``KL(D_lam || pi_g*) <= log sum exp(eps) - H(lam)``, the general bound reduces to
    it, and when ``pi_k >= D_k / p`` the robust value is at most ``log p``.
    Identical experts (``pi_k = pi``): ``KL(D_lam || pi_g*) <= sum_k lam*_k eps_k - JSD_lam``,
    and with identical domains as well the robust value is ``eps``.
    """
    res = solvers.robust(inst.D, inst.P)
    eps = expert_errors(inst.D, inst.P)
    out = []
    if experts_within_domains(inst):
        for lam in np.atleast_2d(lams):
            q = {"lam": lam, "lam_star": res.lam, "eps": eps, "value": res.value}
            out.append(Check("disjoint: KL(D_lam||pi_g*) <= LSE(eps) - H(lam)", UPPER,
                             disjoint_regime_bound(eps, lam), kl(mixture(lam, inst.D), res.q), _tol(res), q))
            out.append(Check("disjoint: Thm 3 bound = LSE(eps) - H(lam)", EQUAL,
                             disjoint_regime_bound(eps, lam), robust_bound(inst.D, inst.P, lam, res.lam),
                             ABS_TOL, q))
        if (inst.P >= inst.D / inst.p - 1e-15).all():
            out.append(Check("disjoint, pi_k >= D_k/p: robust value <= log p", UPPER, np.log(inst.p), res.value,
                             _tol(res), {"value": res.value, "lam_star": res.lam}))
    if np.ptp(inst.P, axis=0).max() == 0:
        for lam in np.atleast_2d(lams):
            out.append(Check("identical experts: KL(D_lam||pi_g*) <= lam*.eps - JSD_lam", UPPER,
                             identical_regime_bound(eps, res.lam, lam, inst.D), kl(mixture(lam, inst.D), res.q),
                             _tol(res), {"lam": lam, "lam_star": res.lam, "eps": eps}))
        same = np.tile(inst.D[0], (inst.p, 1))
        res_same = solvers.robust(same, inst.P)
        out.append(Check("identical experts and domains: robust value = eps", EQUAL,
                         kl(inst.D[0], inst.P[0]), res_same.value, _tol(res_same), {"value": res_same.value}))
    return out


def check_thm3_ensemble(inst: Instance, lams) -> list[Check]:
    """Fully overlapping experts with unequal errors: which formula bounds ``KL(D_lam || pi_g*)``?

    The paper's summary ``sum_k sigma_k eps_k`` (sigma = softmax(eps)) against the direct
    derivation ``sum_k lam*_k eps_k - JSD_lam``, both compared with the true KL of the
    exact robust gate at every tested lam (vertices included, so the worst case, the
    robust value itself, is among them). The derivation is exact for identical experts,
    which is the assumption recorded.
    """
    res = solvers.robust(inst.D, inst.P)
    eps = expert_errors(inst.D, inst.P)
    identical = bool(np.ptp(inst.P, axis=0).max() == 0)
    summary = ensemble_summary_formula(eps)
    out = []
    for lam in np.atleast_2d(lams):
        truth = kl(mixture(lam, inst.D), res.q)
        q = {"lam": lam, "lam_star": res.lam, "eps": eps, "robust_value": res.value, "sigma_eps": summary}
        out.append(Check("paper summary: KL(D_lam||pi_g*) <= sum sigma_k eps_k", UPPER, summary, truth,
                         _tol(res), q, identical))
        out.append(Check("derivation: KL(D_lam||pi_g*) <= sum lam*_k eps_k - JSD_lam", UPPER,
                         identical_regime_bound(eps, res.lam, lam, inst.D), truth, _tol(res), q, identical))
    return out


def check_least_favorable(inst: Instance, lams, family: ExponentialFamily) -> list[Check]:
    """Sec. 4.4: lam* is least favourable and lives on the domains attaining ``max_k KL(D_k||q*)``.

    Support: for every k with ``lam*_k > 0``, ``max_j KL(D_j||q*) - KL(D_k||q*) <= gap / lam*_k``
    (complementary slackness, certified). Least favourable: ``phi(lam*) >= phi(lam)`` for
    the tested lam, with ``phi(lam) = min_{G1} sum_k lam_k KL(D_k || q)``. Then an
    observation: a monolithic exponential-family model fitted on lam*-weighted data
    against uniform weights (worst-domain KL).
    """
    res = solvers.robust(inst.D, inst.P)
    kls = kl(inst.D, res.q)
    shortfall = kls.max() - kls
    on = res.lam > SUPPORT_EPS
    slack = res.gap / np.where(on, res.lam, 1.0) + ABS_TOL - shortfall
    k = int(np.argmin(np.where(on, slack, np.inf)))
    out = [Check("lam* supported on argmax_k KL(D_k||q*)", UPPER, 0.0, shortfall[k],
                 tol=ABS_TOL + res.gap / res.lam[k],
                 quantities={"lam_star": res.lam, "kl": kls, "domain": k, "gap": res.gap})]
    for lam in np.atleast_2d(lams):
        active = lam > 0  # a domain without weight may have infinite KL to the best response
        phi = float(lam[active] @ kl(inst.D[active], solvers.best_response(inst.D, inst.P, lam)))
        out.append(Check("phi(lam*) >= phi(lam)", LOWER, phi, res.lower, _tol(res),
                         {"lam": lam, "lam_star": res.lam}))
    out.append(check_monolithic_weights(inst, res.lam, family))
    return out


def box_priors(p: int, rng, shrink=(0.2, 0.5, 0.8)) -> list[PriorSet]:
    """Prior sets ``{lam >= t u}`` for a random u in the simplex and each shrink factor t."""
    u = rng.dirichlet(np.ones(p))
    return [PriorSet(p, lower=t * u) for t in shrink]


def check_thm4_5(inst: Instance, priors) -> list[Check]:
    """Thms 4-5: ``0 <= V(simplex) - V(Lambda) <= L * d_H(Lambda, simplex)``.

    V is the value of the linearised game ``min_q max_{lam in Lambda} sum_k lam_k KL(D_k||q)``;
    d_H is the L1 Hausdorff distance and L the derived constant
    ``(max_k - min_k) KL(D_k || q_Lambda) / 2`` (:func:`theory.bounds.prior_lipschitz_bound`).
    The ratio ``(V(simplex) - V(Lambda)) / d_H`` is recorded: its maximum over instances
    is the audit's estimate of the Lipschitz constant.
    """
    full = solvers.robust(inst.D, inst.P)
    out = []
    for prior in priors:
        res = solvers.robust(inst.D, inst.P, prior=prior)
        d_h = hausdorff_to_simplex(prior)
        drop = full.value - res.value
        tol = ABS_TOL + full.gap + res.gap
        q = {"lower": prior.lower, "hausdorff_l1": d_h, "value_simplex": full.value, "value_prior": res.value,
             "ratio": drop / d_h if d_h > 0 else 0.0, "lipschitz_derived": prior_lipschitz_bound(res.kl, 1.0),
             "lam_star_prior": res.lam}
        out.append(Check("V(Lambda) <= V(simplex)", UPPER, full.value, res.value, tol, q))
        out.append(Check("V(simplex) - V(Lambda) <= L d_H", UPPER, prior_lipschitz_bound(res.kl, d_h), drop, tol, q))
    return out
