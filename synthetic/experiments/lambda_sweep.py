"""The lambda-sweep on the conflict task: test KL against the test mixture, gate vs baselines.

Two sequence domains (the conflict task, optionally with domain A contaminated by B),
tiny torch experts trained on their own domain, and monolithic torch models trained on
the aggregate of the same training samples: at even weights (the modular system's size
and a larger one), the Oracle (trained on each test mixture), Group DRO, DoReMi-style
reweighting, and the least-favourable mixture ``lam*``. The robust gate and the best
static (constant) gate are the exact solutions of :func:`theory.solve_robust` over the
trained experts on the enumerated outcome space ``{0..V-1}^T``, and every test KL
``KL(D_lam || model)`` is exact.
"""

from __future__ import annotations

import numpy as np

from synthetic.baselines import train_doremi, train_group_dro, train_on_weights
from synthetic.experiments.common import EXACT_TOL, exact_probs, seed_streams, sha256_array, single_thread_torch
from synthetic.experiments.labels import DOREMI, GROUP_DRO, LAM_STAR_TRAINED, ORACLE, ROBUST, STATIC, expert_alone
from synthetic.experiments.labels import monolithic
from synthetic.finite import finite_instance
from synthetic.markov import conflict_task, contaminated
from synthetic.models import TorchSequenceModel
from theory import kl, mixture, solve_robust

__all__ = ["ORACLE", "ROBUST", "STATIC", "lambda_sweep", "task_domains"]

#: The two domains of the conflict task, in the order of ``(D, P)``.
DOMAIN_NAMES = ("A", "B")


def task_domains(config: dict):
    """Domains (A, B) of the conflict task; A contaminated by B at ``config['contamination']``."""
    A, B = conflict_task(config["V"], config["T"], config["noise"])
    rate = config.get("contamination", 0.0)
    if rate > 0:
        A = contaminated(A, B, rate)
    return A, B


def _test_rows(label, q, D, lams, config, extra=None):
    return [{"model": label, "lam0": float(lam[0]), "test_kl": kl(mixture(lam, D), q),
             "contamination": config.get("contamination", 0.0), "seed": config["seed"], **(extra or {})}
            for lam in lams]


def lambda_sweep(config: dict) -> dict:
    """Exact test KL of the robust gate and every baseline over a grid of test mixtures.

    config: ``V``, ``T``, ``noise``, ``contamination``, ``m`` (training sequences per
    domain), ``steps`` (training steps of every torch model), ``expert_width``,
    ``mono_width`` (the modular system's size), ``large_width``, ``points`` (test
    mixtures), ``oracle_points``, ``seed``.
    """
    with single_thread_torch():
        return _lambda_sweep(config)


def _lambda_sweep(config: dict) -> dict:
    V, T, seed = config["V"], config["T"], config["seed"]
    A, B = task_domains(config)
    sample_seeds, expert_seeds = seed_streams(seed, 2, 2)
    data = [d.sample(config["m"], s) for d, s in zip((A, B), sample_seeds)]
    fit = {"steps": config["steps"]}
    experts = [TorchSequenceModel(V, T, config["expert_width"], seed=s, name=f"expert {k}").fit([d], **fit)
               for k, (d, s) in enumerate(zip(data, expert_seeds))]
    D, P, outcomes = finite_instance([A, B], experts)
    robust = solve_robust(D, P, tol=EXACT_TOL)
    static = solve_robust(D, P, family="constant", tol=EXACT_TOL)
    width = config["mono_width"]
    # Every monolithic model starts from the same initialisation seed (common random numbers).
    common = {"V": V, "T": T, "seed": seed}
    doremi, doremi_lam = train_doremi(data, experts, width=width, **common, **fit)
    baselines = {
        monolithic(width): train_on_weights(data, [0.5, 0.5], width=width, **common, **fit),
        monolithic(config["large_width"]): train_on_weights(data, [0.5, 0.5], width=config["large_width"],
                                                            **common, **fit),
        GROUP_DRO: train_group_dro(data, width=width, **common, **fit),
        DOREMI: doremi,
        LAM_STAR_TRAINED: train_on_weights(data, robust.lam, width=width, **common, **fit),
    }
    t = np.linspace(0.0, 1.0, config["points"])
    lams = np.column_stack([t, 1 - t])
    rows = _test_rows(ROBUST, robust.q, D, lams, config)
    rows += _test_rows(STATIC, static.q, D, lams, config)
    for k, name in enumerate(DOMAIN_NAMES):
        rows += _test_rows(expert_alone(name), P[k], D, lams, config)
    for label, model in baselines.items():
        rows += _test_rows(label, exact_probs(model, outcomes), D, lams, config,
                           {"parameters": model.n_parameters})
    to = np.linspace(0.0, 1.0, config["oracle_points"])
    for lam in np.column_stack([to, 1 - to]):
        oracle = train_on_weights(data, lam, width=width, **common, **fit)
        rows += _test_rows(ORACLE, exact_probs(oracle, outcomes), D, [lam], config,
                           {"parameters": oracle.n_parameters})
    eps = kl(D, P)
    summary = {"lam_star": robust.lam.tolist(), "static_weights": static.gate[0].tolist(),
               "doremi_weights": np.asarray(doremi_lam).tolist(), "eps": eps.tolist(),
               "robust_value": robust.value, "static_value": static.value,
               "expert_parameters": experts[0].n_parameters, "solver_status": [robust.status, static.status]}
    gated_size = sum(e.n_parameters for e in experts)
    for r in rows:
        r.setdefault("parameters", gated_size if r["model"] in (ROBUST, STATIC) else experts[0].n_parameters)
    return {"rows": rows, "summary": summary,
            "checksums": {f"lambda_sweep/c{config.get('contamination', 0.0)}/s{seed}/train_{k}": sha256_array(d)
                          for k, d in enumerate(data)}}
