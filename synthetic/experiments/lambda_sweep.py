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
from synthetic.experiments.common import exact_probs, sha256_array, single_thread_torch
from synthetic.finite import finite_instance
from synthetic.markov import conflict_task, contaminated
from synthetic.models import TorchSequenceModel
from theory import kl, mixture, solve_robust

ROBUST = "robust gate"
STATIC = "best static gate"
ORACLE = "Oracle"


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
    data = [A.sample(config["m"], seed), B.sample(config["m"], seed + 1)]
    fit = {"steps": config["steps"]}
    experts = [TorchSequenceModel(V, T, config["expert_width"], seed=seed + k, name=f"expert {k}").fit([d], **fit)
               for k, d in enumerate(data)]
    D, P, outcomes = finite_instance([A, B], experts)
    robust = solve_robust(D, P, tol=1e-9)
    static = solve_robust(D, P, family="constant", tol=1e-9)
    width = config["mono_width"]
    common = {"V": V, "T": T, "seed": seed}
    doremi, doremi_lam = train_doremi(data, experts, width=width, **common, **fit)
    monolithic = {
        f"monolithic w{width} (even)": train_on_weights(data, [0.5, 0.5], width=width, **common, **fit),
        f"monolithic w{config['large_width']} (even)": train_on_weights(data, [0.5, 0.5], width=config["large_width"],
                                                                        **common, **fit),
        "Group DRO": train_group_dro(data, width=width, **common, **fit),
        "DoReMi": doremi,
        "lam*-trained": train_on_weights(data, robust.lam, width=width, **common, **fit),
    }
    t = np.linspace(0.0, 1.0, config["points"])
    lams = np.column_stack([t, 1 - t])
    rows = _test_rows(ROBUST, robust.q, D, lams, config)
    rows += _test_rows(STATIC, static.q, D, lams, config)
    for k in range(2):
        rows += _test_rows(f"expert {'AB'[k]} alone", P[k], D, lams, config)
    for label, model in monolithic.items():
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
    for r in rows:
        r.setdefault("parameters", 2 * experts[0].n_parameters if r["model"] in (ROBUST, STATIC) else
                     experts[0].n_parameters)
    return {"rows": rows, "summary": summary,
            "checksums": {f"lambda_sweep/c{config.get('contamination', 0.0)}/s{seed}/train_{k}": sha256_array(d)
                          for k, d in enumerate(data)}}
