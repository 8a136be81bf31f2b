"""Theorem 3 on finite instances: the true robust KL against the bound, over lambda.

For the robust gate ``g*`` (exact, from :func:`theory.solve_robust`) and every test
mixture ``lam`` the theorem states

``KL(D_lam || pi_g*) <= log sum_k exp(eps_k) - H_sigma^{lam*}(K|X) - JSD_lam``

(:func:`theory.bounds.robust_bound`). Instances come from the claims audit's
generators (:func:`theory.claims.instances.make_instance`), one regime at a time. For
fully overlapping experts with unequal errors (``identical-domains``) the table also
carries the two candidate regime formulas: the paper's summary ``sum_k sigma_k eps_k``
and the direct derivation ``sum_k lam*_k eps_k - JSD_lam``.
"""

from __future__ import annotations

import numpy as np

from synthetic.experiments.common import lam_label, lambda_grid, seed_streams, sha256_array
from theory import jsd, kl, mixture, solve_robust
from theory.bounds import (
    ensemble_summary_formula,
    expert_errors,
    identical_regime_bound,
    robust_bound,
    static_barrier,
    static_weights,
)
from theory.claims.instances import make_instance

#: The regimes of the figure, in the claims audit's names.
REGIMES = ("disjoint", "identical-experts", "overlapping", "identical-domains")
#: Certified gap of the robust solve: the figure counts slack below -1e-7 nats as a
#: violation, so the solver's error must stay far below that.
BOUND_TOL = 1e-10


def thm3_curves(config: dict) -> dict:
    """True robust KL, the Theorem 3 bound and the best static gate over test mixtures.

    config: ``regime``, ``p``, ``n``, ``quality`` (expert noise level), ``seed``,
    ``points`` (test mixtures).
    """
    instance_seed, grid_seed = seed_streams(config["seed"], 2)[0]
    inst = make_instance(config["regime"], config["p"], config["n"], config["quality"],
                         np.random.default_rng(instance_seed))
    D, P = inst.D, inst.P
    res = solve_robust(D, P, tol=BOUND_TOL)
    eps = expert_errors(D, P)
    pi_sigma = static_weights(eps) @ P
    rows = []
    for i, lam in enumerate(lambda_grid(config["p"], config["points"], grid_seed)):
        Dl = mixture(lam, D)
        true_kl = kl(Dl, res.q)
        bound = robust_bound(D, P, lam, res.lam)
        rows.append({
            "regime": config["regime"], "p": config["p"], "n": config["n"], "seed": config["seed"],
            "point": i, "lam": lam_label(lam), "lam0": float(lam[0]),
            "robust_kl": true_kl, "bound": bound, "slack": bound - true_kl,
            "static_sigma_kl": kl(Dl, pi_sigma), "jsd": jsd(lam, D),
            "direct_formula": identical_regime_bound(eps, res.lam, lam, D),
            "summary_formula": ensemble_summary_formula(eps),
            "robust_value": res.value, "lse_eps": static_barrier(eps),
            "lam_star": lam_label(res.lam), "solver_status": res.status, "solver_gap": res.gap,
        })
    return {"rows": rows, "checksums": {f"thm3/{config['regime']}/p{config['p']}/n{config['n']}/s{config['seed']}":
                                        sha256_array(np.vstack([D, P]))}}
