"""Structural distillation on the conflict task: a causal router in place of the gate.

Experts are Kneser-Ney n-grams fitted on samples of their domain; the robust gate is
the exact solution of :func:`theory.solve_robust` on the enumerated sequences. A causal
router (:func:`modular.distill.train_router`, the paper's Algorithm 5) is trained on
sequences sampled from the gated model ``pi_g``; the exact Bayes router (the posterior
over experts given the prefix) and the exactly optimal router come from
:mod:`modular.distill` on the enumerated space. Every model's test KL
``KL(D_lam || model)`` is exact, and so is ``KL(pi_g || rho)`` for each router.
"""

from __future__ import annotations

import numpy as np

from modular.distill import bayes_router, kl_to_routed, optimal_router, routed_log_prob, router_divergence
from modular.distill import router_probs, router_tv, train_router
from synthetic.baselines import train_on_weights
from synthetic.experiments.common import EXACT_TOL, exact_probs, seed_streams, sha256_array, single_thread_torch
from synthetic.experiments.labels import BAYES_ROUTER, LEARNED_ROUTER, OPTIMAL_ROUTER, ROBUST, kl_gate_to_routed
from synthetic.experiments.labels import monolithic, routed
from synthetic.finite import finite_instance
from synthetic.markov import conflict_task
from synthetic.ngram import NGramModel
from theory import kl, mixture, solve_robust


def distillation(config: dict) -> dict:
    """Routed models (learned, Bayes, optimal router) against the gate and a larger monolithic model.

    config: ``V``, ``T``, ``noise``, ``order``, ``m`` (training sequences per domain),
    ``n_samples`` (sequences drawn from pi_g to train the router), ``router_steps``,
    ``mono_width``, ``mono_steps``, ``points`` (test mixtures), ``seed``.
    """
    V, T, seed = config["V"], config["T"], config["seed"]
    domains = conflict_task(V, T, config["noise"])
    sample_seeds, (draw_seed,) = seed_streams(seed, len(domains), 1)
    data = [d.sample(config["m"], s) for d, s in zip(domains, sample_seeds)]
    experts = [NGramModel(V, config["order"], T, name=f"expert {k}").fit(x) for k, x in enumerate(data)]
    D, P, outcomes = finite_instance(domains, experts)
    exact = solve_robust(D, P, tol=EXACT_TOL)
    token_logp = np.stack([e.token_log_probs(outcomes) for e in experts], axis=2)  # (n, T, p)
    with np.errstate(divide="ignore"):
        log_gate = np.log(exact.gate)
    log_q = np.log(exact.q)
    rng = np.random.default_rng(draw_seed)
    draws = rng.choice(len(outcomes), size=config["n_samples"], p=exact.q / exact.q.sum())
    with single_thread_torch():
        fit = train_router(outcomes[draws], token_logp[draws], vocab=V, steps=config["router_steps"], seed=seed)
        routers = {LEARNED_ROUTER: router_probs(fit.router, outcomes)}
        mono = train_on_weights(data, [0.5, 0.5], V=V, T=T, width=config["mono_width"], seed=seed,
                                steps=config["mono_steps"])
    routers[BAYES_ROUTER] = bayes_router(outcomes, token_logp, log_gate)
    routers[OPTIMAL_ROUTER] = optimal_router(outcomes, token_logp, log_q).router
    models = {ROBUST: exact.q, monolithic(config["mono_width"]): exact_probs(mono, outcomes)}
    summary = {"seed": seed}
    for name, probs in routers.items():
        log_rho = routed_log_prob(probs, token_logp)
        models[routed(name)] = np.exp(log_rho)
        summary[kl_gate_to_routed(name)] = kl_to_routed(log_q, log_rho)
    # Expected summed router KL E_{x ~ pi_g} sum_t KL(gamma_Bayes(x_<t) || gamma_learned(x_<t)).
    summary["router_kl_learned_vs_bayes"] = router_divergence(log_q, routers[BAYES_ROUTER], routers[LEARNED_ROUTER])
    summary["router_tv_learned_vs_bayes"] = router_tv(log_q, routers[BAYES_ROUTER], routers[LEARNED_ROUTER])
    t = np.linspace(0.0, 1.0, config["points"])
    rows = [{"model": name, "lam0": float(a), "test_kl": kl(mixture([a, 1 - a], D), q / q.sum()), "seed": seed}
            for name, q in models.items() for a in t]
    summary["router_final_loss"] = float(fit.history["loss"][-1])
    return {"rows": rows, "summary": summary,
            "checksums": {f"distillation/s{seed}/train_{k}": sha256_array(x) for k, x in enumerate(data)}
            | {f"distillation/s{seed}/router_samples": sha256_array(draws)}}
