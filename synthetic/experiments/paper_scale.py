"""The paper's synthetic experiment at its own scale: V = 100, a learned transformer gate.

Problem: on the conflict task (A: ``x_t = x_{t-1} + 1``, B: ``x_t = x_{t-1} - 1`` mod V,
optionally A contaminated by B), compare ``KL(D_lam || model)`` over test mixtures
``lam`` for the paper's models: transformer experts trained per domain, a learned
transformer sequence gate over them fitted by :func:`modular.fit_robust_gate` (KL game,
unbiased expert-sample Z estimator), monolithic transformers of two sizes trained on
the even mixture, Oracles of both sizes trained on each test mixture, Group DRO and
DoReMi, the best static gate and a count-based bigram of the even mixture.

Scoring: ``KL(D_lam || q) = sum_k lam_k KL(D_k || q) - JSD_lam`` (:mod:`synthetic.mc_kl`)
with the exact ``JSD_lam`` over step-count classes (:mod:`synthetic.conflict_exact`).
``KL(D_k || q)`` is exact for the bigram (chain rule) and a Monte Carlo mean of
``log D_k(x) - log q(x)`` over fresh samples of ``D_k`` with its standard error for the
transformers and the gated model; the gated model is normalised by its Z, estimated
from fresh expert samples (``Z = sum_k E_{pi_k}[g(x, k)]``), whose SE enters every point.

:func:`small_v_reference` repeats the gate fit at a V and T small enough to enumerate,
where the exact tabular robust gate over the same experts (:func:`theory.solve_robust`)
is known: the learned gate's worst-case KL minus the exact robust value is the gap due
to learning (gate family, samples, optimisation).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from modular import fit_robust_gate, gated_log_prob, make_gate, sample_set
from synthetic.baselines import ngram_on_weights, train_doremi, train_group_dro, train_on_weights
from synthetic.conflict_exact import ConflictCounts, ngram_cross_entropy
from synthetic.experiments.common import seed_streams, sha256_array, single_thread_torch
from synthetic.experiments.labels import DOREMI, GROUP_DRO, ORACLE, STATIC, expert_alone, monolithic, sized
from synthetic.experiments.lambda_sweep import task_domains
from synthetic.experiments.real_text import sample_windows
from synthetic.finite import finite_instance
from synthetic.mc_kl import DomainKL, domain_kl, exact_domain_kl
from synthetic.models import TorchSequenceModel
from theory import entropy, gated_model, kl, solve_robust

GATE = "learned gate"
#: The exactly scored bigram fitted on the pooled data at even weights.
BIGRAM_EVEN = "bigram (even)"


def _gate_options(config: dict) -> dict:
    """Every option of the fit, passed explicitly (its defaults are not part of this experiment)."""
    return dict(adversary="kl", z_estimator="expert-samples", steps=config["gate_steps"],
                batch_size=config["gate_batch"], lr=config["gate_lr"], lr_schedule=config["gate_schedule"],
                weight_decay=0.0, lam_lr=config["lam_lr"], mu_lr=config["mu_lr"], penalty=config["penalty"],
                mu0=1.0, z_decay=config["z_decay"], lam_iterate="average", log_every=config["log_every"],
                seed=config["seed"])


def _expert_logp(experts, seqs) -> np.ndarray:
    return np.column_stack([e.log_prob(seqs) for e in experts])


@torch.no_grad()
def gate_log_weights(gate, seqs, chunk: int = 65536) -> np.ndarray:
    """``log g(x, k)`` of a sequence gate on an (m x T) token array, (m x p) float64."""
    gate.eval()
    ref = next(iter(gate.parameters()))
    out = [torch.log_softmax(gate(torch.as_tensor(seqs[a:a + chunk], device=ref.device)), dim=1).double().cpu()
           for a in range(0, len(seqs), chunk)]
    return torch.cat(out).numpy()


def fit_gate(experts, dom_samples, config: dict, entropies, seed: int):
    """Fit the transformer sequence gate on domain samples and fresh expert samples.

    Returns the fit's result and the expert samples (for provenance).
    """
    (sample_seeds,) = seed_streams(seed, len(experts), key=200)
    exp_samples = [sample_windows(e, config["gate_m"], config["T"], s) for e, s in zip(experts, sample_seeds)]
    dom_sets = [sample_set(_expert_logp(experts, x), x, name=f"domain {k}") for k, x in enumerate(dom_samples)]
    exp_sets = [sample_set(_expert_logp(experts, x), x, name=f"expert {k}") for k, x in enumerate(exp_samples)]
    torch.manual_seed(seed)
    gate = make_gate("transformer", 2, vocab=config["V"], length=config["T"])
    res = fit_robust_gate(gate, dom_sets, exp_sets, entropies=entropies, **_gate_options(config))
    return res, exp_samples


def gate_z(gate, experts, config: dict, seed: int) -> tuple[float, float]:
    """``Z = sum_k E_{x ~ pi_k}[g(x, k)]`` on fresh expert samples, and its standard error."""
    z, var = 0.0, 0.0
    for k, e in enumerate(experts):
        x = sample_windows(e, config["mc"], config["T"], seed_streams(seed, len(experts), key=300)[0][k])
        g = np.exp(gate_log_weights(gate, x)[:, k])
        z += g.mean()
        var += g.var(ddof=1) / g.size
    return float(z), float(np.sqrt(var))


def best_static_weight(log_d, log_experts) -> float:
    """``argmin_w max_k mean_i [log D_k(x_i) - log(w pi_A(x_i) + (1 - w) pi_B(x_i))]`` over samples of each D_k.

    The objective is a maximum of convex functions of w, so a bounded scalar search finds it.
    """
    def worst(w):
        with np.errstate(divide="ignore"):
            lw = np.log([w, 1 - w])
        return max(float(np.mean(d - np.logaddexp(lw[0] + e[:, 0], lw[1] + e[:, 1]))) for d, e in zip(log_d, log_experts))

    return float(minimize_scalar(worst, bounds=(1e-9, 1 - 1e-9), method="bounded", options={"xatol": 1e-6}).x)


def paper_scale(config: dict) -> dict:
    """Per-mixture KL (with SE) of every model of the paper's synthetic experiment at one (V, T, rate, seed).

    config: ``V``, ``T``, ``noise``, ``contamination``, ``m`` (training sequences per
    domain), ``expert_steps``, ``steps`` (every monolithic model), ``lr``,
    ``expert_width``, ``mono_width``, ``large_width``, ``oracle_points``, ``points``
    (plotted mixtures), ``mc`` (test samples per domain and per expert for Z),
    ``gate_m`` (fit samples per domain and per expert), ``gate_steps``, ``gate_batch``,
    ``gate_lr``, ``gate_schedule``, ``lam_lr``, ``mu_lr``, ``penalty``, ``z_decay``,
    ``log_every``, ``seed``.
    """
    with single_thread_torch():
        return _paper_scale(config)


def _paper_scale(config: dict) -> dict:
    V, T, seed = config["V"], config["T"], config["seed"]
    clock = {}
    A, B = task_domains(config)
    counts = ConflictCounts(V, T, config["noise"], config.get("contamination", 0.0))
    entropies = np.array([counts.entropy(e) for e in np.eye(2)])
    data_seeds, expert_seeds, gate_seeds, test_seeds = seed_streams(seed, 2, 2, 2, 2)
    data = [A.sample(config["m"], data_seeds[0]), B.sample(config["m"], data_seeds[1])]
    fit = {"steps": config["steps"], "lr": config["lr"]}
    common = {"V": V, "T": T, "seed": seed}

    t0 = time.perf_counter()
    experts = [TorchSequenceModel(V, T, config["expert_width"], seed=expert_seeds[k], name=f"expert {'AB'[k]}")
               .fit([d], steps=config["expert_steps"], lr=config["lr"]) for k, d in enumerate(data)]
    clock["experts"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    # The gate sees fresh samples: on the experts' own training sequences their log-probabilities
    # are optimistic (overfitting), and the gate would learn that bias.
    gate_data = [A.sample(config["gate_m"], gate_seeds[0]), B.sample(config["gate_m"], gate_seeds[1])]
    res, exp_samples = fit_gate(experts, gate_data, config, entropies, seed)
    clock["gate_fit"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    w16, w20 = config["mono_width"], config["large_width"]
    doremi, doremi_lam = train_doremi(data, experts, width=w16, **common, **fit)
    models = {
        monolithic(w16): train_on_weights(data, [0.5, 0.5], width=w16, **common, **fit),
        monolithic(w20): train_on_weights(data, [0.5, 0.5], width=w20, **common, **fit),
        sized(GROUP_DRO, w16): train_group_dro(data, width=w16, **common, **fit),
        sized(DOREMI, w16): doremi,
    }
    to = np.linspace(0.0, 1.0, config["oracle_points"])
    oracles = [(width, a, train_on_weights(data, [a, 1 - a], width=width, **common, **fit))
               for width in (w16, w20) for a in to]
    clock["monolithic"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    test = [A.sample(config["mc"], test_seeds[0]), B.sample(config["mc"], test_seeds[1])]
    log_d = [counts.log_prob(x)[k] for k, x in enumerate(test)]
    test_experts = [_expert_logp(experts, x) for x in test]
    scores: dict[str, tuple[DomainKL, int, int]] = {}  # name -> (KL, trainable, frozen parameters)
    for name, model in models.items():
        scores[name] = (domain_kl(log_d, [model.log_prob(x) for x in test]), model.n_parameters, 0)
    z, z_se = gate_z(res.gate, experts, config, seed)
    log_pg = [gated_log_prob(torch.as_tensor(gate_log_weights(res.gate, x)), torch.as_tensor(e)).numpy()
              for x, e in zip(test, test_experts)]
    frozen = sum(e.n_parameters for e in experts)
    gate_params = sum(p.numel() for p in res.gate.parameters())
    scores[GATE] = (domain_kl(log_d, log_pg, log_z=np.log(z), log_z_se=z_se / z), gate_params, frozen)
    fit_d = [counts.log_prob(d)[k] for k, d in enumerate(gate_data)]
    w_static = best_static_weight(fit_d, [_expert_logp(experts, d) for d in gate_data])
    lw = np.log([w_static, 1 - w_static])
    static_q = [np.logaddexp(lw[0] + e[:, 0], lw[1] + e[:, 1]) for e in test_experts]
    scores[STATIC] = (domain_kl(log_d, static_q), 1, frozen)
    for k, name in enumerate((expert_alone("A"), expert_alone("B"))):
        scores[name] = (domain_kl(log_d, [e[:, k] for e in test_experts]), experts[k].n_parameters, 0)
    bigram = ngram_on_weights(data, [0.5, 0.5], V=V, order=2, T=T)
    domains = [A, B]
    scores[BIGRAM_EVEN] = (exact_domain_kl([ngram_cross_entropy(d, bigram) - h for d, h in zip(domains, entropies)]),
                               V * (V + 1), 0)
    clock["scoring"] = time.perf_counter() - t0

    t = np.linspace(0.0, 1.0, config["points"])
    lams = np.column_stack([t, 1 - t])
    jsd = np.array([counts.jsd(lam) for lam in lams])
    base = {"V": V, "T": T, "contamination": config.get("contamination", 0.0), "seed": seed}
    rows = []
    for name, (score, trainable, frozen_p) in scores.items():
        value, se = score.at(lams, jsd)
        rows += [{**base, "model": name, "lam0": float(a), "test_kl": float(v), "se": float(s),
                  "exact": bool(score.se.max() == 0 and score.shared_se == 0), "trainable": trainable,
                  "frozen": frozen_p, "parameters": trainable + frozen_p}
                 for a, v, s in zip(t, value, se)]
    for width, a, model in oracles:
        score = domain_kl(log_d, [model.log_prob(x) for x in test])
        value, se = score.at([[a, 1 - a]], [counts.jsd([a, 1 - a])])
        rows.append({**base, "model": sized(ORACLE, width), "lam0": float(a), "test_kl": float(value[0]),
                     "se": float(se[0]), "exact": False, "trainable": model.n_parameters, "frozen": 0,
                     "parameters": model.n_parameters})
    h = res.history
    dynamics = [{**base, "step": int(s), "lam0": float(l[0]), "mu": float(mu), "z": float(zz), "z_ema": float(ze)}
                for s, l, mu, zz, ze in zip(h["step"], h["lam"], h["mu"], h["z"], h["z_ema"])]
    summary = {**base, "gate_lam0": float(res.lam[0]), "gate_value_fit": res.value, "gate_z_fit": res.z,
               "gate_z_check": res.z_check, "gate_mu": res.mu, "gate_z_test": z, "gate_z_test_se": z_se,
               "gate_fit_seconds": res.seconds, "static_weight_A": w_static,
               "doremi_weight_A": float(np.asarray(doremi_lam)[0]), "expert_kl_own": [
                   float(scores[expert_alone("A")][0].kl[0]), float(scores[expert_alone("B")][0].kl[1])],
               "entropy": entropies.tolist(), "mc": config["mc"], "seconds": clock}
    checksums = {f"paper_scale/T{T}/c{base['contamination']}/s{seed}/train_{k}": sha256_array(d)
                 for k, d in enumerate(data)}
    checksums |= {f"paper_scale/T{T}/c{base['contamination']}/s{seed}/expert_samples_{k}": sha256_array(x)
                  for k, x in enumerate(exp_samples)}
    return {"rows": rows, "dynamics": dynamics, "summary": summary, "checksums": checksums}


def small_v_reference(config: dict) -> dict:
    """The learned transformer gate against the exact tabular robust gate at an enumerable (V, T).

    Experts and the gate are trained as in :func:`paper_scale` (on samples); the exact
    robust and best static gates over the same experts come from
    :func:`theory.solve_robust` on the enumerated ``V^T`` outcomes, where the learned
    gate is also scored exactly (normalised by its exact Z).

    config: ``V``, ``T``, ``noise``, ``contamination``, ``m``, ``expert_steps``, ``lr``,
    ``expert_width``, ``gate_m`` and the gate-fit options of :func:`paper_scale`, ``seed``.
    """
    with single_thread_torch():
        V, T, seed = config["V"], config["T"], config["seed"]
        A, B = task_domains(config)
        data_seeds, expert_seeds, gate_seeds, _ = seed_streams(seed, 2, 2, 2, 2)
        data = [A.sample(config["m"], data_seeds[0]), B.sample(config["m"], data_seeds[1])]
        experts = [TorchSequenceModel(V, T, config["expert_width"], seed=expert_seeds[k], name=f"expert {'AB'[k]}")
                   .fit([d], steps=config["expert_steps"], lr=config["lr"]) for k, d in enumerate(data)]
        D, P, outcomes = finite_instance([A, B], experts)
        robust = solve_robust(D, P, tol=1e-9)
        static = solve_robust(D, P, family="constant", tol=1e-9)

        gate_data = [A.sample(config["gate_m"], gate_seeds[0]), B.sample(config["gate_m"], gate_seeds[1])]
        res, _ = fit_gate(experts, gate_data, config, entropy(D), seed)
        g = np.exp(gate_log_weights(res.gate, outcomes))
        q = gated_model(g, P)
        learned = float(kl(D, q / q.sum()).max())
    return {"summary": {"V": V, "T": T, "contamination": config.get("contamination", 0.0), "seed": seed,
                        "robust_value": robust.value, "static_value": static.value, "learned_value": learned,
                        "gap": learned - robust.value, "learned_z": float(q.sum()), "fit_z": res.z,
                        "fit_value": res.value, "fit_mu": res.mu, "fit_lam0": float(res.lam[0]),
                        "lam_star0": float(robust.lam[0]), "solver_status": robust.status,
                        "fit_seconds": res.seconds},
            "checksums": {f"paper_scale/small/V{V}T{T}/s{seed}/train_{k}": sha256_array(d) for k, d in enumerate(data)}}
