"""Theorem 3 on finite instances: the true robust KL against the bound, over lambda.

For the robust gate ``g*`` (exact, from :func:`theory.solve_robust`) and every test
mixture ``lam`` the theorem states

``KL(D_lam || pi_g*) <= log sum_k exp(eps_k) - H_sigma^{lam*}(K|X) - JSD_lam``,

with ``eps_k = KL(D_k || pi_k)``, ``sigma = softmax(eps)``, ``pi_sigma = sum_k sigma_k pi_k``
and ``H_sigma^{lam*}(K|X) = sum_k lam*_k E_{x~D_k}[-log(sigma_k pi_k(x) / pi_sigma(x))]``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp, softmax

from synthetic.experiments.common import lam_label, lambda_grid, require_option, sha256_array
from theory import jsd, kl, mixture, solve_robust

REGIMES = ("disjoint", "identical", "overlapping", "ensemble")


def regime_instance(regime: str, p: int, n: int, seed: int, expert_noise: float = 0.4):
    """A random finite instance ``(D, P)`` (each p x n) of one regime.

    - ``disjoint``: domains and experts supported on disjoint blocks of outcomes;
    - ``identical``: overlapping domains, all experts the same distribution;
    - ``overlapping``: overlapping domains, each expert a noisy copy of its domain;
    - ``ensemble``: all domains equal, experts of unequal quality.

    Expert ``k`` mixes its domain with a Dirichlet(1) draw at weight
    ``expert_noise * (k + 1) / p``, so the expert errors ``eps_k`` differ.
    """
    require_option("regime", regime, REGIMES)
    rng = np.random.default_rng(seed)
    noise_w = expert_noise * (np.arange(p) + 1.0) / p
    if regime == "disjoint":
        block = np.arange(n) * p // n  # outcome x belongs to domain block[x]
        own = block[None, :] == np.arange(p)[:, None]
        D = np.where(own, rng.dirichlet(np.ones(n), size=p), 0.0)
        N = np.where(own, rng.dirichlet(np.ones(n), size=p), 0.0)
        D /= D.sum(axis=1, keepdims=True)
        N /= N.sum(axis=1, keepdims=True)
    else:
        D = rng.dirichlet(np.ones(n), size=p)
        if regime == "ensemble":
            D = np.broadcast_to(D[0], (p, n)).copy()
        N = rng.dirichlet(np.ones(n), size=p)
    P = (1.0 - noise_w[:, None]) * D + noise_w[:, None] * N
    if regime == "identical":
        P = np.broadcast_to(P.mean(axis=0), (p, n)).copy()
    return D, P


def thm3_terms(D, P, lam_star) -> dict:
    """``eps``, ``sigma``, ``log sum exp(eps)`` and ``H_sigma^{lam*}(K|X)`` of an instance."""
    eps = kl(D, P)
    sigma = softmax(eps)
    pi_sigma = sigma @ P
    with np.errstate(divide="ignore", invalid="ignore"):
        surprise = np.where(D > 0, -np.log(sigma[:, None] * P / pi_sigma[None, :]), 0.0)
    cond_entropy = float(lam_star @ (D * surprise).sum(axis=1))
    return {"eps": eps, "sigma": sigma, "lse_eps": float(logsumexp(eps)), "cond_entropy": cond_entropy,
            "pi_sigma": pi_sigma}


def thm3_curves(config: dict) -> dict:
    """True robust KL, the Theorem 3 bound and the best static gate over test mixtures.

    config: ``regime``, ``p``, ``n``, ``seed``, ``points`` (test mixtures),
    ``expert_noise``.
    """
    D, P = regime_instance(config["regime"], config["p"], config["n"], config["seed"], config["expert_noise"])
    res = solve_robust(D, P, tol=1e-9)
    terms = thm3_terms(D, P, res.lam)
    rows = []
    for i, lam in enumerate(lambda_grid(config["p"], config["points"], config["seed"])):
        Dl = mixture(lam, D)
        true_kl = kl(Dl, res.q)
        bound = terms["lse_eps"] - terms["cond_entropy"] - jsd(lam, D)
        rows.append({
            "regime": config["regime"], "p": config["p"], "n": config["n"], "seed": config["seed"],
            "point": i, "lam": lam_label(lam), "lam0": float(lam[0]),
            "robust_kl": true_kl, "bound": bound, "slack": bound - true_kl,
            "static_sigma_kl": kl(Dl, terms["pi_sigma"]), "jsd": jsd(lam, D),
            "robust_value": res.value, "lse_eps": terms["lse_eps"], "cond_entropy": terms["cond_entropy"],
            "lam_star": lam_label(res.lam), "solver_status": res.status, "solver_gap": res.gap,
        })
    return {"rows": rows, "checksums": {f"thm3/{config['regime']}/p{config['p']}/n{config['n']}/s{config['seed']}":
                                        sha256_array(np.vstack([D, P]))}}
