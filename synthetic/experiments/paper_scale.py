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
``KL(D_k || q)`` is exact for the bigram (chain rule). For the other models it is a
stratified Monte Carlo estimate over the step-count classes, on one set of test
sequences shared by every model and both domains (common random numbers): classes of
at most ``enumerate_up_to`` sequences are enumerated, the others sampled uniformly
(:meth:`~synthetic.conflict_exact.ConflictCounts.sample_classes`). Per sequence the
estimate is Rao-Blackwellised, ``sum_t KL(D_k(. | x_<t) || q(. | x_<t))``, for every model
whose next-token laws are known (transformers, experts, the static gate as a
constant-weight sequence mixture); the learned sequence gate does not factor, so its
estimate is ``log f(x) - log q(x) + b_f(x)`` with the static mixture f as control
variate. The gated model is normalised by its Z, estimated from fresh expert samples
(``Z = sum_k E_{pi_k}[g(x, k)]``), whose SE enters every point.

Work is split into items (:func:`work_items`) that share nothing but their configuration:
one per (T, contamination, seed) for the experts, the gate, DoReMi and the scores built
on the experts, and one per distinct monolithic training. A monolithic model trained on
the even mixture is the Oracle at lambda = 1/2, and the Oracle at lambda_A = 0 never
sees A's data (zero weight, zero gradient), so it is trained once for every
contamination rate.

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
from modular.evaluate import z_with_se
from synthetic.baselines import ngram_on_weights, train_doremi, train_group_dro, train_on_weights
from synthetic.conflict_exact import ConflictCounts, ngram_cross_entropy
from synthetic.experiments.common import seed_streams, sha256_array, single_thread_torch
from synthetic.experiments.labels import DOREMI, GROUP_DRO, ORACLE, STATIC, expert_alone, monolithic, sized
from synthetic.experiments.lambda_sweep import task_domains
from synthetic.experiments.real_text import sample_windows
from synthetic.finite import finite_instance
from synthetic.mc_kl import DomainKL, exact_domain_kl, mixture_next_log_probs, sample_kl, sequence_log_prob
from synthetic.models import TorchSequenceModel
from theory import entropy, gated_model, kl, solve_robust

GATE = "learned gate"
#: The exactly scored bigram fitted on the pooled data at even weights.
BIGRAM_EVEN = "bigram (even)"
EXPERT_A, EXPERT_B = expert_alone("A"), expert_alone("B")
#: Rows scored per forward pass (bounds the (rows x T x V) float64 arrays).
CHUNK = 4096


def _stream(seed: int, key: int, k: int = 0) -> int:
    """Seed ``k`` of the stream ``key`` of a run (:func:`seed_streams`): data 0, experts 1,
    expert samples 200, fresh gate data 500, Z samples 300, test strata 1000."""
    return seed_streams(seed, k + 1, key=key)[0][k]

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
    exp_samples = [sample_windows(e, config["gate_m"], config["T"], _stream(seed, 200, k)) for k, e in enumerate(experts)]
    dom_sets = [sample_set(_expert_logp(experts, x), x, name=f"domain {k}") for k, x in enumerate(dom_samples)]
    exp_sets = [sample_set(_expert_logp(experts, x), x, name=f"expert {k}") for k, x in enumerate(exp_samples)]
    torch.manual_seed(seed)
    gate = make_gate("transformer", 2, vocab=config["V"], length=config["T"])
    res = fit_robust_gate(gate, dom_sets, exp_sets, entropies=entropies, **_gate_options(config))
    return res, exp_samples


def best_static_weight(log_d, log_experts) -> float:
    """``argmin_w max_k mean_i [log D_k(x_i) - log(w pi_A(x_i) + (1 - w) pi_B(x_i))]`` over samples of each D_k.

    The objective is a maximum of convex functions of w, so a bounded scalar search finds it.
    """
    def worst(w):
        with np.errstate(divide="ignore"):
            lw = np.log([w, 1 - w])
        return max(float(np.mean(d - np.logaddexp(lw[0] + e[:, 0], lw[1] + e[:, 1]))) for d, e in zip(log_d, log_experts))

    return float(minimize_scalar(worst, bounds=(1e-9, 1 - 1e-9), method="bounded", options={"xatol": 1e-6}).x)


@torch.no_grad()
def next_log_probs(model, seqs) -> np.ndarray:
    """``log q(. | x_<t)`` of a :class:`TorchSequenceModel` at every prefix of each row, (m x T x V) float64.

    One forward pass of the trained network (float32, so each log-probability carries a
    rounding error of about 1e-6 nats: far below the Monte Carlo standard errors).
    """
    x = torch.as_tensor(np.asarray(seqs, dtype=np.int64), device=model.device)
    return model.net.eval()(model._inputs(x)).double().cpu().numpy()


class ScoringStrata:
    """The test sequences shared by every model of one (V, T, contamination, seed), and their scores.

    Parameters
    ----------
    counts : ConflictCounts
    total : int
        Draws over the sampled classes (the enumerated ones come on top).
    seed : int
    enumerate_up_to : int
        Classes of at most this many sequences are enumerated (exact).
    """

    def __init__(self, counts: ConflictCounts, total: int, seed: int, enumerate_up_to: int):
        self.counts = counts
        self.x, self.strata, self.complete = counts.sample_classes(total, seed, enumerate_up_to=enumerate_up_to)
        self.probs = counts.step_probs(self.x)

    def __len__(self) -> int:
        return len(self.x)

    def chunks(self):
        """Slices of at most :data:`CHUNK` rows."""
        return [slice(a, a + CHUNK) for a in range(0, len(self.x), CHUNK)]

    def score(self, estimates, *, log_z: float = 0.0, log_z_se: float = 0.0) -> DomainKL:
        """:class:`DomainKL` from per-row estimates of ``KL(D_k || q)``, (2 x rows): stratified means."""
        return sample_kl(list(estimates), strata=self.strata, masses=self.counts.D, complete=self.complete,
                         log_z=log_z, log_z_se=log_z_se)

    def factored(self, log_next) -> DomainKL:
        """Score a model with known next-token laws, ``log_next(rows) -> (m x T x V)``: Rao-Blackwellised."""
        est = np.hstack([self.counts.model_kl(self.x[c], log_next(self.x[c]), self.probs[:, c]) for c in self.chunks()])
        return self.score(est)

    def gated(self, experts, gate, w_static: float, log_z: float, log_z_se: float) -> dict[str, DomainKL]:
        """The learned gate (static mixture as control variate), the static gate and each expert alone."""
        lw = np.log([w_static, 1 - w_static])
        est = {GATE: [], STATIC: [], EXPERT_A: [], EXPERT_B: []}
        for c in self.chunks():
            x, probs = self.x[c], self.probs[:, c]
            le = np.stack([next_log_probs(e, x) for e in experts])
            lpe = np.column_stack([sequence_log_prob(l, x) for l in le])
            lf = mixture_next_log_probs(lw, le, x)
            b_f = self.counts.model_kl(x, lf, probs)
            lq = gated_log_prob(torch.as_tensor(gate_log_weights(gate, x)), torch.as_tensor(lpe)).numpy()
            # E_{D_k}[log D_k - log q] = E[(log D_k - log q) - (log D_k - log f) + b_f]: the terms in
            # log D_k cancel, and log f - log q varies little when the gate is near constant.
            est[GATE].append(sequence_log_prob(lf, x)[None] - lq[None] + b_f)
            est[STATIC].append(b_f)
            for k, name in enumerate((EXPERT_A, EXPERT_B)):
                est[name].append(self.counts.model_kl(x, le[k], probs))
        out = {name: self.score(np.hstack(v)) for name, v in est.items()}
        out[GATE] = self.score(np.hstack(est[GATE]), log_z=log_z, log_z_se=log_z_se)
        return out


def _strata(config: dict, contamination: float) -> ScoringStrata:
    counts = ConflictCounts(config["V"], config["T"], config["noise"], contamination)
    return ScoringStrata(counts, config["mc"], _stream(config["seed"], 1000), config["enumerate_up_to"])


def _data(config: dict, contamination: float):
    A, B = task_domains({**config, "contamination": contamination})
    return A, B, [A.sample(config["m"], _stream(config["seed"], 0, 0)), B.sample(config["m"], _stream(config["seed"], 0, 1))]


def _kl_record(score: DomainKL) -> dict:
    return {"kl": score.kl.tolist(), "se": score.se.tolist(), "shared_se": score.shared_se, "samples": score.samples}


def _clock(clock: dict, name: str, t0: tuple[float, float]) -> None:
    clock[f"{name}_seconds"] = time.perf_counter() - t0[0]
    clock[f"{name}_cpu_seconds"] = time.process_time() - t0[1]


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def paper_scale_item(config: dict) -> dict:
    """One item of :func:`work_items`: ``config["item"]`` is "domain", "monolithic" or "small"."""
    run = {"domain": domain_item, "monolithic": monolithic_item, "small": small_v_reference}[config["item"]]
    return run(config)


def domain_item(config: dict) -> dict:
    """Experts, learned gate, best static gate, DoReMi and the bigram at one (V, T, contamination, seed).

    config: ``V``, ``T``, ``noise``, ``contamination``, ``m`` (training sequences per
    domain), ``expert_steps``, ``steps``, ``lr``, ``expert_width``, ``mono_width``, ``mc``
    (sampled test sequences), ``enumerate_up_to``, ``z_mc`` (expert samples per expert
    for Z), ``gate_m`` (fit samples per domain and per expert), ``gate_steps``,
    ``gate_batch``, ``gate_lr``, ``gate_schedule``, ``lam_lr``, ``mu_lr``, ``penalty``,
    ``z_decay``, ``log_every``, ``seed``.

    Returns per-domain scores (``scores``: name -> KL record and parameter counts), the
    gate fit's trajectory (``dynamics``), a ``summary`` and data ``checksums``.
    """
    with single_thread_torch():
        return _domain_item(config)


def _domain_item(config: dict) -> dict:
    V, T, seed, rate = config["V"], config["T"], config["seed"], config["contamination"]
    clock = {}
    A, B, data = _data(config, rate)
    counts = ConflictCounts(V, T, config["noise"], rate)
    entropies = np.array([counts.entropy(e) for e in np.eye(2)])
    fit = {"steps": config["steps"], "lr": config["lr"]}

    t0 = _now()
    experts = [TorchSequenceModel(V, T, config["expert_width"], seed=_stream(seed, 1, k), name=f"expert {'AB'[k]}")
               .fit([d], steps=config["expert_steps"], lr=config["lr"]) for k, d in enumerate(data)]
    _clock(clock, "experts", t0)

    t0 = _now()
    # The gate sees fresh samples: on the experts' own training sequences their log-probabilities
    # are optimistic (overfitting), and the gate would learn that bias.
    gate_data = [A.sample(config["gate_m"], _stream(seed, 500, 0)), B.sample(config["gate_m"], _stream(seed, 500, 1))]
    res, exp_samples = fit_gate(experts, gate_data, config, entropies, seed)
    _clock(clock, "gate_fit", t0)

    t0 = _now()
    doremi, doremi_lam = train_doremi(data, experts, width=config["mono_width"], V=V, T=T, seed=seed, **fit)
    _clock(clock, "doremi", t0)

    t0 = _now()
    strata = _strata(config, rate)
    z, z_se = z_with_se([torch.as_tensor(gate_log_weights(res.gate, sample_windows(e, config["z_mc"], T, _stream(seed, 300, k))))
                         for k, e in enumerate(experts)])
    fit_d = [counts.log_prob(d)[k] for k, d in enumerate(gate_data)]
    w_static = best_static_weight(fit_d, [_expert_logp(experts, d) for d in gate_data])
    frozen = sum(e.n_parameters for e in experts)
    gate_params = sum(p.numel() for p in res.gate.parameters())
    gated = strata.gated(experts, res.gate, w_static, float(np.log(z)), z_se / z)
    params = {GATE: (gate_params, frozen), STATIC: (1, frozen), EXPERT_A: (experts[0].n_parameters, 0),
              EXPERT_B: (experts[1].n_parameters, 0)}
    scores = {name: {**_kl_record(score), "trainable": params[name][0], "frozen": params[name][1]}
              for name, score in gated.items()}
    scores[sized(DOREMI, config["mono_width"])] = {
        **_kl_record(strata.factored(lambda x: next_log_probs(doremi, x))), "trainable": doremi.n_parameters, "frozen": 0}
    bigram = ngram_on_weights(data, [0.5, 0.5], V=V, order=2, T=T)
    scores[BIGRAM_EVEN] = {**_kl_record(exact_domain_kl([ngram_cross_entropy(d, bigram) - h
                                                              for d, h in zip((A, B), entropies)])),
                               "trainable": V * (V + 1), "frozen": 0}
    _clock(clock, "scoring", t0)

    base = {"V": V, "T": T, "contamination": rate, "seed": seed}
    h = res.history
    dynamics = [{**base, "step": int(s), "lam0": float(l[0]), "mu": float(mu), "z": float(zz), "z_ema": float(ze)}
                for s, l, mu, zz, ze in zip(h["step"], h["lam"], h["mu"], h["z"], h["z_ema"])]
    summary = {**base, "gate_lam0": float(res.lam[0]), "gate_value_fit": res.value, "gate_z_fit": res.z,
               "gate_z_check": res.z_check, "gate_mu": res.mu, "gate_z_test": z, "gate_z_test_se": z_se,
               "static_weight_A": w_static, "doremi_weight_A": float(np.asarray(doremi_lam)[0]),
               "expert_kl_own": [scores[EXPERT_A]["kl"][0], scores[EXPERT_B]["kl"][1]],
               "entropy": entropies.tolist(), "mc": len(strata), "z_mc": config["z_mc"],
               "enumerated_classes": int(strata.complete.sum()), "classes": counts.n_classes, **clock}
    tag = f"paper_scale/T{T}/c{rate}/s{seed}"
    checksums = {f"{tag}/train_{k}": sha256_array(d) for k, d in enumerate(data)}
    checksums |= {f"{tag}/expert_samples_{k}": sha256_array(x) for k, x in enumerate(exp_samples)}
    checksums[f"{tag}/test"] = sha256_array(strata.x)
    return {"scores": scores, "dynamics": dynamics, "summary": summary, "checksums": checksums, "seconds": clock}


def monolithic_item(config: dict) -> dict:
    """One monolithic transformer, trained once and scored on the test strata of each contamination rate.

    config: ``V``, ``T``, ``noise``, ``m``, ``steps``, ``lr``, ``seed``, ``width``,
    ``rule`` ("weights" with ``lam0``, the weight of A, or "group_dro"),
    ``train_contamination``, ``score_contaminations`` (list), ``mc``, ``enumerate_up_to``.
    """
    with single_thread_torch():
        t0, clock = _now(), {}
        V, T, seed = config["V"], config["T"], config["seed"]
        _, _, data = _data(config, config["train_contamination"])
        common = {"V": V, "T": T, "seed": seed, "width": config["width"], "steps": config["steps"], "lr": config["lr"]}
        if config["rule"] == "group_dro":
            model = train_group_dro(data, **common)
        else:
            model = train_on_weights(data, [config["lam0"], 1 - config["lam0"]], **common)
        _clock(clock, "train", t0)
        t0 = _now()
        scores = {str(rate): _kl_record(_strata(config, rate).factored(lambda x: next_log_probs(model, x)))
                  for rate in config["score_contaminations"]}
        _clock(clock, "scoring", t0)
    tag = f"paper_scale/T{T}/c{config['train_contamination']}/s{seed}"
    return {"scores": scores, "n_parameters": model.n_parameters, "seconds": clock,
            "checksums": {f"{tag}/train_{k}": sha256_array(d) for k, d in enumerate(data)}}


def _oracle_grid(config: dict) -> list[float]:
    return [float(a) for a in np.round(np.linspace(0.0, 1.0, config["oracle_points"]), 12)]


def work_items(configs: list[dict], small: list[dict] = ()) -> list[dict]:
    """Every item of the experiment for the (V, T, contamination, seed) ``configs`` (and small-V references).

    Domain items first (the longest), then the references, then one item per distinct
    monolithic training: per (T, seed, width) the Oracle grid and lambda_A = 1/2 (the
    even mixture), per contamination rate, except lambda_A = 0 (shared by all rates), and
    Group DRO per rate.
    """
    items = [{**c, "item": "domain"} for c in configs] + [{**c, "item": "small"} for c in small]
    mono: dict[tuple, dict] = {}
    keep = ("V", "T", "noise", "m", "steps", "lr", "seed", "mc", "enumerate_up_to")
    for c in configs:
        base = {k: c[k] for k in keep}
        rate = c["contamination"]
        for width in (c["mono_width"], c["large_width"]):
            for a in sorted(set(_oracle_grid(c)) | {0.5}):
                train_rate = 0.0 if a == 0 else rate
                key = (c["V"], c["T"], c["seed"], width, a, train_rate)
                item = mono.setdefault(key, {**base, "item": "monolithic", "rule": "weights", "lam0": a,
                                             "width": width, "train_contamination": train_rate,
                                             "score_contaminations": []})
                item["score_contaminations"].append(rate)
        mono[(c["V"], c["T"], c["seed"], "dro", rate)] = {
            **base, "item": "monolithic", "rule": "group_dro", "width": c["mono_width"], "train_contamination": rate,
            "score_contaminations": [rate]}
    return items + list(mono.values())


def assemble(configs: list[dict], items: list[dict], results: list[dict]) -> dict:
    """Rows of ``KL(D_lam || model)`` (with SE) per (T, contamination, seed, model, lam), from the items' results.

    Models scored at every plotted mixture: the domain item's, the monolithic models
    trained on the even mixture and Group DRO; each Oracle at its own mixture.
    """
    by_item = list(zip(items, results))
    rows, dynamics, summaries = [], [], []
    for c in configs:
        V, T, seed, rate = c["V"], c["T"], c["seed"], c["contamination"]
        counts = ConflictCounts(V, T, c["noise"], rate)
        t = np.linspace(0.0, 1.0, c["points"])
        lams = np.column_stack([t, 1 - t])
        jsd = np.array([counts.jsd(lam) for lam in lams])
        base = {"V": V, "T": T, "contamination": rate, "seed": seed}
        mine = [(i, r) for i, r in by_item if (i["V"], i["T"], i["seed"]) == (V, T, seed)]
        dom = next(r for i, r in mine if i["item"] == "domain" and i["contamination"] == rate)
        scored = {name: (rec, rec["trainable"], rec["frozen"]) for name, rec in dom["scores"].items()}
        oracles = []
        for i, r in mine:
            if i["item"] != "monolithic" or rate not in i["score_contaminations"]:
                continue
            rec, n = r["scores"][str(rate)], r["n_parameters"]
            if i["rule"] == "group_dro":
                scored[sized(GROUP_DRO, i["width"])] = (rec, n, 0)
                continue
            if i["lam0"] == 0.5:
                scored[monolithic(i["width"])] = (rec, n, 0)
            if i["lam0"] in _oracle_grid(c):
                oracles.append((i["width"], i["lam0"], rec, n))
        for name, (rec, trainable, frozen) in scored.items():
            score = DomainKL(np.array(rec["kl"]), np.array(rec["se"]), rec["shared_se"], rec["samples"])
            value, se = score.at(lams, jsd)
            exact = bool(score.se.max() == 0 and score.shared_se == 0)
            rows += [{**base, "model": name, "lam0": float(a), "test_kl": float(v), "se": float(s), "exact": exact,
                      "trainable": trainable, "frozen": frozen, "parameters": trainable + frozen}
                     for a, v, s in zip(t, value, se)]
        for width, a, rec, n in sorted(oracles):
            score = DomainKL(np.array(rec["kl"]), np.array(rec["se"]), rec["shared_se"], rec["samples"])
            value, se = score.at([[a, 1 - a]], [counts.jsd([a, 1 - a])])
            rows.append({**base, "model": sized(ORACLE, width), "lam0": a, "test_kl": float(value[0]),
                         "se": float(se[0]), "exact": False, "trainable": n, "frozen": 0, "parameters": n})
        dynamics += dom["dynamics"]
        summaries.append(dom["summary"])
    return {"rows": rows, "dynamics": dynamics, "summary": summaries}


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
        t0, clock = _now(), {}
        V, T, seed = config["V"], config["T"], config["seed"]
        A, B = task_domains(config)
        data = [A.sample(config["m"], _stream(seed, 0, 0)), B.sample(config["m"], _stream(seed, 0, 1))]
        experts = [TorchSequenceModel(V, T, config["expert_width"], seed=_stream(seed, 1, k), name=f"expert {'AB'[k]}")
                   .fit([d], steps=config["expert_steps"], lr=config["lr"]) for k, d in enumerate(data)]
        D, P, outcomes = finite_instance([A, B], experts)
        robust = solve_robust(D, P, tol=1e-9)
        static = solve_robust(D, P, family="constant", tol=1e-9)

        gate_data = [A.sample(config["gate_m"], _stream(seed, 500, 0)), B.sample(config["gate_m"], _stream(seed, 500, 1))]
        res, _ = fit_gate(experts, gate_data, config, entropy(D), seed)
        g = np.exp(gate_log_weights(res.gate, outcomes))
        q = gated_model(g, P)
        learned = float(kl(D, q / q.sum()).max())
        _clock(clock, "small", t0)
    return {"seconds": clock, "summary": {"V": V, "T": T, "contamination": config.get("contamination", 0.0), "seed": seed,
                        "robust_value": robust.value, "static_value": static.value, "learned_value": learned,
                        "gap": learned - robust.value, "learned_z": float(q.sum()), "fit_z": res.z,
                        "fit_value": res.value, "fit_mu": res.mu, "fit_lam0": float(res.lam[0]),
                        "lam_star0": float(robust.lam[0]), "solver_status": robust.status,
                        "fit_seconds": res.seconds},
            "checksums": {f"paper_scale/small/V{V}T{T}/s{seed}/train_{k}": sha256_array(d) for k, d in enumerate(data)}}
