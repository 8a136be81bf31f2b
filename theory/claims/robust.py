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
    hull_lipschitz_constant,
    identical_regime_bound,
    prior_lipschitz_bound,
    robust_bound,
    static_barrier,
    static_weights,
)
from theory.claims import solvers
from theory.claims.fixed import experts_within_domains
from theory.claims.instances import Instance
from theory.claims.monolithic import ExponentialFamily, check_monolithic_weights
from theory.claims.record import (
    ABS_TOL,
    CONSISTENCY,
    EQUAL,
    IDENTITY,
    LOWER,
    UPPER,
    Check,
    tightened,
    tightened_name,
)
from theory.divergences import entropy, kl, mixture
from theory.gates import MEMBERSHIP_TOL, pointwise_hull
from theory.prior import PriorSet

#: Mixture weights below this are treated as zero when reading the support of lam*.
SUPPORT_EPS = 1e-6


def _tol(res) -> float:
    return ABS_TOL + max(res.gap, 0.0)


def _upper(part, bound, truth, tol, quantities, meets=None, role=None) -> Check:
    """An upper-bound check whose false variant is the bound lowered by 10%."""
    extra = {} if role is None else {"role": role}
    return Check(part, UPPER, bound, truth, tol, quantities, meets, variant=tightened_name(UPPER),
                 variant_bound=tightened(UPPER, bound), **extra)


def disjoint_domains(D) -> bool:
    """Whether no outcome carries mass under two domains."""
    return bool(((np.asarray(D) > 0).sum(axis=0) <= 1).all())


def mean_domain_in_hull(D, P, tol: float = MEMBERSHIP_TOL) -> bool:
    """Whether ``(1/p) sum_k D_k`` lies in the pointwise hull ``min_j pi_j <= . <= max_j pi_j``."""
    lo, hi = pointwise_hull(P)
    mean = np.asarray(D, dtype=np.float64).mean(axis=0)
    return bool(((lo <= mean + tol) & (mean <= hi + tol)).all())


def check_thm3(inst: Instance, lams) -> list[Check]:
    """Thm 3: ``KL(D_lam || pi_g*) <= log sum exp(eps) - H_sigma^{lam*}(K|X) - JSD_lam`` for every lam.

    Also checks that ``(lam*, g*)`` is a saddle point of the linearised game
    (``max_k KL(D_k || q*) = phi(lam*)`` up to the solver's tolerance).
    """
    res = solvers.robust(inst.D, inst.P)
    # the solver stops on this very certificate: a consistency check, not evidence
    out = [Check("saddle point: max_k KL(D_k||q*) = phi(lam*)", EQUAL, res.lower, res.upper,
                 tol=ABS_TOL + 10 * res.tol, quantities={"lam_star": res.lam, "value": res.value},
                 role=CONSISTENCY)]
    for lam in np.atleast_2d(lams):
        truth = kl(mixture(lam, inst.D), res.q)
        bound = robust_bound(inst.D, inst.P, lam, res.lam)
        out.append(_upper("KL(D_lam||pi_g*) <= Thm 3 bound", bound, truth, _tol(res),
                          {"lam": lam, "lam_star": res.lam, "value": res.value}))
    return out


def check_thm3_regimes(inst: Instance, lams) -> list[Check]:
    """Thm 3 in its closed-form regimes.

    Disjoint experts (domains disjoint, each expert on its domain's support):
    ``KL(D_lam || pi_g*) <= log sum exp(eps) - H(lam)``, to which the general bound
    reduces (an identity).

    Disjoint domains, any experts: for every model q of mass <= 1,
    ``max_k KL(D_k||q) >= (1/p) sum_k KL(D_k||q) = log p + KL(Dbar||q)`` with
    ``Dbar = (1/p) sum_k D_k``, so the robust value is ``>= log p + min_{G1} KL(Dbar||q)
    >= log p``, with equality iff ``Dbar`` lies in the pointwise hull of the experts.
    The summary's "``pi_k >= D_k / p`` gives ``log p``" is checked as stated, with that
    hull condition as its assumption.

    Identical experts (``pi_k = pi``): ``KL(D_lam || pi_g*) <= sum_k lam*_k eps_k - JSD_lam``
    (Thm 3's bound specialised), and with identical domains as well the robust value is
    ``eps``, an identity (every gate gives ``q = pi``).
    """
    res = solvers.robust(inst.D, inst.P)
    eps = expert_errors(inst.D, inst.P)
    out = []
    if experts_within_domains(inst):
        for lam in np.atleast_2d(lams):
            q = {"lam": lam, "lam_star": res.lam, "eps": eps, "value": res.value}
            out.append(_upper("disjoint experts: KL(D_lam||pi_g*) <= LSE(eps) - H(lam)",
                              disjoint_regime_bound(eps, lam), kl(mixture(lam, inst.D), res.q), _tol(res), q))
            out.append(Check("disjoint experts: Thm 3 bound = LSE(eps) - H(lam)", EQUAL,
                             disjoint_regime_bound(eps, lam), robust_bound(inst.D, inst.P, lam, res.lam),
                             ABS_TOL, q, role=IDENTITY, variant="H(lam) dropped",
                             variant_bound=static_barrier(eps)))
    if disjoint_domains(inst.D):
        out += _disjoint_domain_checks(inst, res)
    if np.ptp(inst.P, axis=0).max() == 0:
        for lam in np.atleast_2d(lams):
            out.append(_upper("identical experts: KL(D_lam||pi_g*) <= lam*.eps - JSD_lam",
                              identical_regime_bound(eps, res.lam, lam, inst.D), kl(mixture(lam, inst.D), res.q),
                              _tol(res), {"lam": lam, "lam_star": res.lam, "eps": eps}))
        same = np.tile(inst.D[0], (inst.p, 1))
        res_same = solvers.robust(same, inst.P)
        out.append(Check("identical experts and domains: robust value = eps", EQUAL,
                         kl(inst.D[0], inst.P[0]), res_same.value, _tol(res_same), {"value": res_same.value},
                         role=IDENTITY))
    return out


def _disjoint_domain_checks(inst: Instance, res) -> list[Check]:
    """Disjoint domains: value >= log p, = log p iff the mean domain is in the hull (see above)."""
    log_p = float(np.log(inst.p))
    in_hull = mean_domain_in_hull(inst.D, inst.P)
    broad = bool((inst.P >= inst.D / inst.p - 1e-15).all())
    q = {"value": res.value, "lam_star": res.lam, "log_p": log_p, "mean_domain_in_hull": in_hull,
         "pi_k_ge_D_k_over_p": broad}
    tol = _tol(res)
    out = [Check("disjoint domains: robust value >= log p", LOWER, log_p, res.value, tol, q,
                 variant=tightened_name(LOWER), variant_bound=tightened(LOWER, log_p))]
    if broad:
        out.append(_upper("disjoint domains, pi_k >= D_k/p: robust value <= log p (as summarised)", log_p,
                          res.value, tol, q, meets=in_hull))
    if in_hull:
        out.append(Check("disjoint domains, mean domain in the hull: robust value = log p", EQUAL, log_p,
                         res.value, tol, q, True, variant="robust value = 1.1 log p",
                         variant_bound=1.1 * log_p))
    else:
        # phi(uniform) = log p + min_{G1} KL(Dbar||q) <= V: a floor strictly above log p
        mean = solvers.fixed_mixture(inst.D, inst.P, np.full(inst.p, 1.0 / inst.p))
        floor = log_p + mean.value
        out.append(Check("disjoint domains, mean domain outside the hull: value >= log p + min_G1 KL(Dbar||q)",
                         LOWER, floor, res.value, tol + max(mean.gap, 0.0), {**q, "kl_mean_to_hull": mean.value},
                         variant=tightened_name(LOWER), variant_bound=tightened(LOWER, floor)))
    return out


def check_thm3_ensemble(inst: Instance, lams) -> list[Check]:
    """Fully overlapping experts with unequal errors: does ``sum_k sigma_k eps_k`` bound ``KL(D_lam || pi_g*)``?

    Two readings of "fully overlapping", each recorded as the assumption of its part:

    1. identical *experts* ``pi_k = pi``: every gate gives ``q = pi``, so the robust value
       is ``max_k eps_k`` (an identity), while ``sum_k sigma_k eps_k = LSE(eps) - H(sigma)``
       (an identity: Thm 3's bound at sigma with the JSD term dropped) is below ``max eps``
       whenever the errors differ; Thm 3's own bound specialises to
       ``sum_k lam*_k eps_k - JSD_lam`` (an identity), which therefore cannot fail;
    2. identical *domains* ``D_k = D``: the value is ``min_{G1} KL(D||q) <= KL(D || pi_sigma)
       <= sum_k sigma_k eps_k`` (convexity), so the summary holds.

    Every tested lam includes the vertices, so the worst case (the robust value) is
    among the checks.
    """
    res = solvers.robust(inst.D, inst.P)
    eps = expert_errors(inst.D, inst.P)
    identical = bool(np.ptp(inst.P, axis=0).max() == 0)
    same_domains = bool(np.ptp(inst.D, axis=0).max() == 0)
    summary = ensemble_summary_formula(eps)
    sigma = static_weights(eps)
    q0 = {"eps": eps, "sigma_eps": summary, "lse_minus_h_sigma": static_barrier(eps) - float(entropy(sigma))}
    out = [Check("sum sigma_k eps_k = LSE(eps) - H(sigma)", EQUAL, q0["lse_minus_h_sigma"], summary,
                 ABS_TOL, q0, role=IDENTITY, variant="H(sigma) dropped", variant_bound=static_barrier(eps))]
    if identical:
        out.append(Check("identical experts: robust value = max_k eps_k", EQUAL, float(eps.max()), res.value,
                         _tol(res), {"eps": eps, "value": res.value}, role=IDENTITY))
    for lam in np.atleast_2d(lams):
        truth = kl(mixture(lam, inst.D), res.q)
        q = {"lam": lam, "lam_star": res.lam, "eps": eps, "robust_value": res.value, "sigma_eps": summary}
        out.append(_upper("reading 1, identical experts: KL(D_lam||pi_g*) <= sum sigma_k eps_k", summary, truth,
                          _tol(res), q, identical))
        out.append(_upper("reading 2, identical domains: KL(D_lam||pi_g*) <= sum sigma_k eps_k", summary, truth,
                          _tol(res), q, same_domains))
        derived = identical_regime_bound(eps, res.lam, lam, inst.D)
        out.append(_upper("identical experts: KL(D_lam||pi_g*) <= sum lam*_k eps_k - JSD_lam (Thm 3 specialised)",
                          derived, truth, _tol(res), q, identical))
        if identical:
            out.append(Check("identical experts: Thm 3 bound = sum lam*_k eps_k - JSD_lam", EQUAL, derived,
                             robust_bound(inst.D, inst.P, lam, res.lam), ABS_TOL, q, role=IDENTITY))
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
    # lam*_k shortfall_k <= gap is complementary slackness of the solver's own certificate
    out = [Check("lam* supported on argmax_k KL(D_k||q*)", UPPER, 0.0, shortfall[k],
                 tol=ABS_TOL + res.gap / res.lam[k],
                 quantities={"lam_star": res.lam, "kl": kls, "domain": k, "gap": res.gap}, role=CONSISTENCY)]
    for lam in np.atleast_2d(lams):
        active = lam > 0  # a domain without weight may have infinite KL to the best response
        phi = float(lam[active] @ kl(inst.D[active], solvers.best_response(inst.D, inst.P, lam)))
        out.append(Check("phi(lam*) >= phi(lam)", LOWER, phi, res.lower, _tol(res),
                         {"lam": lam, "lam_star": res.lam}, variant=tightened_name(LOWER),
                         variant_bound=tightened(LOWER, phi)))
    out.append(check_monolithic_weights(inst, res.lam, family))
    return out


def box_priors(p: int, rng, shrink=(0.2, 0.5, 0.8)) -> list[PriorSet]:
    """Prior sets ``{lam >= t u}`` for a random u in the simplex and each shrink factor t."""
    u = rng.dirichlet(np.ones(p))
    return [PriorSet(p, lower=t * u) for t in shrink]


def check_thm4_5(inst: Instance, priors) -> list[Check]:
    """Thms 4-5: ``0 <= V(simplex) - V(Lambda) <= L * d_H(Lambda, simplex)``.

    V is the value of the linearised game ``min_q max_{lam in Lambda} sum_k lam_k KL(D_k||q)``
    and d_H the L1 Hausdorff distance. The constant tested is a priori
    (:func:`theory.bounds.hull_lipschitz_constant`): half the range of the KLs over the
    pointwise hull, which bounds the Lipschitz constant of ``lam -> lam . c(q)`` for
    every q the game can reach, hence of V. The constant computed from the restricted
    solution, ``spread_k KL(D_k || q_Lambda) / 2``, makes the inequality hold by the
    saddle-point property: kept as a consistency check. ``V(Lambda) <= V(simplex)`` is
    a max over a subset (an identity). The ratio ``(V(simplex) - V(Lambda)) / d_H`` is
    recorded: its maximum is a lower bound on any valid constant.
    """
    full = solvers.robust(inst.D, inst.P)
    a_priori = hull_lipschitz_constant(inst.D, inst.P)
    out = []
    for prior in priors:
        res = solvers.robust(inst.D, inst.P, prior=prior)
        d_h = hausdorff_to_simplex(prior)
        drop = full.value - res.value
        tol = ABS_TOL + full.gap + res.gap
        q = {"lower": prior.lower, "hausdorff_l1": d_h, "value_simplex": full.value, "value_prior": res.value,
             "ratio": drop / d_h if d_h > 0 else 0.0, "lipschitz_from_solution": prior_lipschitz_bound(res.kl, 1.0),
             "lipschitz_a_priori": a_priori, "lam_star_prior": res.lam}
        out.append(Check("V(Lambda) <= V(simplex)", UPPER, full.value, res.value, tol, q, role=IDENTITY))
        out.append(_upper("V(simplex) - V(Lambda) <= L d_H, L a priori (range of the KLs over the hull)",
                          a_priori * d_h if d_h > 0 else 0.0, drop, tol, q))
        out.append(Check("V(simplex) - V(Lambda) <= L d_H, L from the restricted solution", UPPER,
                         prior_lipschitz_bound(res.kl, d_h), drop, tol, q, role=CONSISTENCY))
    return out
