"""Training dynamics of the stochastic primal-dual fit: lam_t, mu_t and Z_t.

Task: the conflict task with domain A contaminated by B (so the least-favourable
mixture is not the even one); experts are Kneser-Ney n-gram models fitted on samples
of their own domain. The fit (:func:`modular.fit_robust_gate`, tabular gate over the
enumerated sequences) sees only samples: ``m`` sequences of each domain and ``m`` of
each expert (for the unbiased Z estimate), with the experts' cached log-probabilities.
The exact robust value and ``lam*`` of the same experts come from
:func:`theory.solve_robust` on the enumerated outcome space, for reference.
"""

from __future__ import annotations

import numpy as np
from scipy.special import softmax

from modular import TabularGate, fit_robust_gate, sample_set
from synthetic.experiments.common import EXACT_TOL, seed_streams, sha256_array, single_thread_torch
from synthetic.finite import finite_instance
from synthetic.markov import conflict_task, contaminated
from synthetic.ngram import NGramModel
from theory import entropy, gated_model, kl, solve_robust


def ngram_experts(domains, config: dict, seeds):
    """One n-gram expert per domain, fitted on ``m_expert`` of its samples (drawn with ``seeds[k]``)."""
    return [NGramModel(d.V, config["order"], d.T, name=f"expert {k}").fit(d.sample(config["m_expert"], s))
            for k, (d, s) in enumerate(zip(domains, seeds))]


def primal_dual_dynamics(config: dict) -> dict:
    """History of lam, mu and Z of one fit, with the exact solution for reference.

    config: ``V``, ``T``, ``noise``, ``contamination``, ``order``, ``m_expert``, ``m``
    (samples per domain and per expert for the fit), ``adversary``, ``steps``,
    ``batch_size``, ``lr``, ``lr_schedule``, ``lam_lr``, ``seed``.
    """
    seed = config["seed"]
    A, B = conflict_task(config["V"], config["T"], config["noise"])
    domains = [contaminated(A, B, config["contamination"]), B]
    (draw_seed,), expert_seeds = seed_streams(seed, 1, len(domains))
    experts = ngram_experts(domains, config, expert_seeds)
    D, P, _ = finite_instance(domains, experts)
    exact = solve_robust(D, P, tol=EXACT_TOL)
    rng = np.random.default_rng(draw_seed)
    n = D.shape[1]
    logp = np.log(P).T  # (n x p): every expert's log-probability of every outcome
    dom_idx = [rng.choice(n, size=config["m"], p=d) for d in D]
    exp_idx = [rng.choice(n, size=config["m"], p=q) for q in P]
    dom_sets = [sample_set(logp[i], i, name=f"domain {k}") for k, i in enumerate(dom_idx)]
    exp_sets = [sample_set(logp[i], i, name=f"expert {k}") for k, i in enumerate(exp_idx)]
    with single_thread_torch():
        res = fit_robust_gate(TabularGate(n, 2), dom_sets, exp_sets, entropies=entropy(D),
                              adversary=config["adversary"], steps=config["steps"],
                              batch_size=config["batch_size"], lr=config["lr"], lr_schedule=config["lr_schedule"],
                              lam_lr=config["lam_lr"], seed=seed)
    h = res.history
    rows = [{"adversary": config["adversary"], "seed": seed, "step": int(s), "lam0": float(l[0]), "mu": float(mu),
             "z": float(z), "z_ema": float(ze)}
            for s, l, mu, z, ze in zip(h["step"], h["lam"], h["mu"], h["z"], h["z_ema"])]
    # What an exact solver reaches from the same samples: the robust gate of the empirical
    # domains, scored on the population.
    empirical = np.stack([np.bincount(i, minlength=n) for i in dom_idx]) / config["m"]
    from_samples = solve_robust(empirical, P, tol=EXACT_TOL)
    final = {"adversary": config["adversary"], "seed": seed, "lam_fit0": float(res.lam[0]),
             "lam_star0": float(exact.lam[0]), "value_fit": res.value, "value_exact": exact.value,
             "value_exact_from_samples": float(kl(D, from_samples.q).max()),
             "z_fit": res.z, "z_estimator": res.z_estimator, "fit_seconds": res.seconds}
    q = gated_model(softmax(res.gate_state["logits"].numpy(), axis=1), P)
    final["z_population"] = float(q.sum())
    final["value_fit_population"] = float(kl(D, q / q.sum()).max())
    return {"rows": rows, "final": final,
            "checksums": {f"dynamics/s{seed}/domain_samples": sha256_array(np.vstack(dom_idx)),
                          f"dynamics/s{seed}/expert_samples": sha256_array(np.vstack(exp_idx))}}
