"""Held-out evaluation of a gate against the baselines, per domain and per mixture of domains.

On a cached test split (:mod:`modular.cache`) with windows x of T tokens of each domain
k and samples of each expert, every method m defines a model ``pi_m(x)``; reported:

- ``NLL_k(m) = E_{x ~ D_k}[-log pi_m(x)] / T`` (nats per token) and the excess
  ``E_{x ~ D_k}[log pi_k(x) - log pi_m(x)] / T`` over the domain's own expert, each with
  its standard error (windows taken as independent draws);
- for each mixture ``lam``, ``sum_k lam_k NLL_k`` (and the same for the excess) with
  standard error ``sqrt(sum_k lam_k^2 se_k^2)``, and the worst case over the mixtures
  (default: every vertex, every pair midpoint, the centre);
- the mass ``Z = sum_k E_{x ~ pi_k}[g(x, k)]`` estimated on the expert samples, with its
  standard error ``sqrt(sum_k Var_{pi_k}[g(x,k)] / M)``.

Methods: the gate; each expert alone; the uniform static gate ``g = 1/p``; the best
static gate, the constant ``w`` minimising the worst excess
``max_k E_{D_k}[log pi_k(x) - log sum_j w_j pi_j(x)]`` (solved exactly by
:func:`theory.solve_robust` with ``family="constant"`` on :func:`excess_instance`); the
Branch-Train-Merge / DEMix posterior gate ``g(x, k) = prior_k pi_k(x) / sum_j prior_j
pi_j(x)`` (uniform prior), which is not normalised (``Z > 1`` unless the experts have
disjoint supports): it is scored raw and renormalised (``log pi_g - log Z``).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.special import logsumexp

from modular.cache import describe_data
from modular.data import SampleSet, load_npz
from modular.gate_io import LoadedGate
from modular.gates import mixture_log_prob
from theory import solve_robust
from theory.errors import InputError


def default_mixtures(p: int) -> list[np.ndarray]:
    """Every vertex, every pair midpoint and the centre of the simplex (7 mixtures for p = 3)."""
    eye = np.eye(p)
    mids = [(eye[i] + eye[j]) / 2 for i, j in itertools.combinations(range(p), 2)]
    return list(eye) + mids + [np.full(p, 1.0 / p)]


def parse_mixtures(text: str, p: int) -> list[np.ndarray]:
    """``"1,0,0;0.5,0.5,0"`` -> mixtures (each normalised; non-negative, p entries)."""
    out = []
    for part in filter(None, (s.strip() for s in text.split(";"))):
        try:
            lam = np.array([float(v) for v in part.split(",")])
        except ValueError:
            raise InputError(f"--mixtures: {part!r} is not a comma-separated list of numbers") from None
        if lam.shape != (p,) or (lam < 0).any() or not np.isfinite(lam).all() or lam.sum() <= 0:
            raise InputError(f"--mixtures: {part!r} must be {p} non-negative numbers, not all zero")
        out.append(lam / lam.sum())
    if not out:
        raise InputError("--mixtures: no mixture given")
    return out


def check_gate_matches(meta: dict, info: dict, *, what: str = "gate") -> None:
    """Refuse a gate (or router) whose experts or p differ from those of the data."""
    if meta.get("p") is not None and meta["p"] != info["p"]:
        raise InputError(f"the {what} combines p={meta['p']} experts but the data has p={info['p']} domains")
    for key, label in (("experts", "expert_names"), ("expert_sha256", "expert_sha256")):
        if meta.get(key) is not None and info.get(label) is not None and list(meta[key]) != list(info[label]):
            raise InputError(f"the {what} was fitted with experts {meta.get('experts')} "
                             f"({key} differ from the data's {info.get(label)})")


def gate_log_probs(loaded: LoadedGate, s: SampleSet, *, chunk: int = 8192) -> torch.Tensor:
    """``log g(x, .)`` (m x p, float64) of a saved gate on the samples of ``s``.

    The gate reads the tokens (``meta["features"] == "tokens"``, the default) or the
    experts' log-probabilities (``"logp"``).
    """
    gate = loaded.gate.double()
    if loaded.meta.get("features", "tokens") == "logp":
        finite = s.logp[torch.isfinite(s.logp)]
        feats = torch.nan_to_num(s.logp, neginf=float(finite.min()) if finite.numel() else 0.0)
    else:
        feats = s.features
        if loaded.kind in ("linear", "mlp"):
            feats = feats.double().reshape(s.m, -1)
    if loaded.kind in ("tabular", "sequence") and torch.is_floating_point(feats):
        raise InputError(f"a {loaded.kind} gate reads integer features; the data's features are floats")
    vocab = loaded.config.get("vocab", loaded.config.get("n_outcomes"))
    if vocab is not None and feats.numel() and int(feats.max()) >= vocab:
        raise InputError(f"token id {int(feats.max())} is outside the gate's vocabulary (0..{vocab - 1})")
    out = []
    with torch.inference_mode():
        for a in range(0, s.m, chunk):
            out.append(torch.log_softmax(gate(feats[a:a + chunk]), dim=1))
    return torch.cat(out).double()


def posterior_log_gate(logp: torch.Tensor, prior=None) -> torch.Tensor:
    """``log g(x, k) = log prior_k + log pi_k(x) - log sum_j prior_j pi_j(x)``: the BTM/DEMix gate."""
    p = logp.shape[1]
    log_prior = torch.full((p,), -math.log(p), dtype=torch.float64) if prior is None else torch.log(
        torch.as_tensor(prior, dtype=torch.float64))
    joint = logp + log_prior
    return joint - torch.logsumexp(joint, dim=1, keepdim=True)


def z_with_se(log_gate_on_experts: list[torch.Tensor]) -> tuple[float, float]:
    """``Z = sum_k E_{pi_k}[g(x, k)]`` from each expert's samples and its standard error."""
    z = var = 0.0
    for k, lg in enumerate(log_gate_on_experts):
        g = torch.exp(lg[:, k])
        z += float(g.mean())
        var += float(g.var(unbiased=True)) / len(g) if len(g) > 1 else 0.0
    return z, math.sqrt(var)


def excess_instance(domain_logp: list[np.ndarray], *, shifts=None,
                    weights: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """A finite instance whose constant-gate KL game is the excess game of the cached windows.

    Outcomes: every cached window (windows of different domains kept distinct) and one
    outcome ``r`` for the rest of the mass. ``D_k`` is uniform on the ``m_k`` windows of
    domain k (or proportional to ``weights[k]``). For a window x of domain k, with
    ``M(x) = max_j log pi_j(x)`` and ``c_k = E_{D_k}[M(x) - log pi_k(x)] >= 0``,
    ``P_j(x) = D_k(x) exp(log pi_j(x) - M(x) + c_k - s_k) / C``, with ``s_k`` the shift of
    domain k (default 0) and ``C`` twice the largest row mass so that ``P_j(r) >= 1/2``.
    Then for constant weights w,
    ``KL(D_k || w P) = E_{D_k}[log pi_k(x) - log sum_j w_j pi_j(x)] + s_k + log C``: the
    excess plus the shift plus a constant common to all domains, so the constant-gate KL
    game is the shifted excess game (the same minimiser w; values differing by ``log C``).
    The fit's adversaries are shifted excess games: ``s_k = 0`` (excess),
    ``s_k = E_{D_k}[-log pi_k] - H_k`` (KL), ``s_k = E_{D_k}[-log pi_k]`` (raw NLL).

    Shifting each window by its best expert (rather than by its own) keeps every entry
    representable however far apart the experts are on single windows: only the domains'
    average gaps ``c_k`` (and the shifts, less their minimum) enter the scale (a window
    whose best expert beats its own by more than ~700 nats made the own-expert entries
    underflow to zero).

    Returns ``D``, ``P`` (p x (n+1)) and ``log C``.
    """
    p = len(domain_logp)
    shifts = np.zeros(p) if shifts is None else np.asarray(shifts, dtype=np.float64).reshape(p)
    if not np.isfinite(shifts).all():
        raise InputError(f"the shifts of the excess game must be finite, got {shifts.tolist()}")
    shifts = shifts - shifts.min()
    probs = []
    for k, lp in enumerate(domain_logp):
        if weights is None or weights[k] is None:
            probs.append(np.full(len(lp), 1.0 / len(lp)))
        else:
            w = np.asarray(weights[k], dtype=np.float64)
            probs.append(w / w.sum())
    blocks = []
    for k, (lp, d) in enumerate(zip(domain_logp, probs)):
        own = lp[:, k]
        if not np.isfinite(own[d > 0]).all():
            raise InputError(f"expert {k} gives probability zero to a window of its own domain: the excess is infinite")
        best = lp.max(axis=1)
        gap = float(d[d > 0] @ (best - own)[d > 0])
        with np.errstate(divide="ignore"):
            blocks.append((lp - best[:, None] + gap - shifts[k] + np.log(d)[:, None]).T)  # (p x m_k)
    logP = np.concatenate(blocks, axis=1)
    log_c = float(np.max(logsumexp(logP, axis=1))) + math.log(2.0)
    P = np.exp(logP - log_c)
    P = np.concatenate([P, 1.0 - P.sum(axis=1, keepdims=True)], axis=1)
    D = np.zeros((p, logP.shape[1] + 1))
    start = 0
    for k, d in enumerate(probs):
        D[k, start:start + len(d)] = d
        start += len(d)
    return D, P, log_c


def best_static_gate(domain_logp: list[np.ndarray], *, shifts=None, weights=None, prior=None, solver: str = "dual",
                     tol: float = 1e-9):
    """Constant weights minimising the worst-domain (shifted) excess on cached windows; (w, theory result, log C).

    ``min_w max_{lam in Lambda} sum_k lam_k (E_{D_k}[log pi_k(x) - log sum_j w_j pi_j(x)] + s_k)``,
    solved exactly on :func:`excess_instance`; ``res.value - log C`` is the optimal value.
    """
    D, P, log_c = excess_instance(domain_logp, shifts=shifts, weights=weights)
    res = solve_robust(D, P, family="constant", solver=solver, tol=tol, prior=prior)
    return np.asarray(res.gate[0], dtype=np.float64), res, log_c


def best_static_for(domains: list[SampleSet], *, adversary: str, entropies=None, prior=None):
    """The best constant gate of a fit's game on its domain samples (weights w, theory result).

    The adversary's losses of a constant gate are shifted excesses (:func:`excess_instance`):
    ``a_k = excess_k + s_k`` with ``s_k = 0`` (``"excess"``), ``own_k - H_k`` (``"kl"``) or
    ``own_k`` (``"nll"``), ``own_k = E_{D_k}[-log pi_k]``. A fit started there
    (:func:`modular.gates.start_at_constant`) begins at the best input-independent gate.
    """
    logps = [d.logp.double().numpy() for d in domains]
    weights = [None if d.weight is None else d.probabilities().numpy() for d in domains]
    own = np.array([float(d.probabilities() @ -d.logp[:, k].double()) for k, d in enumerate(domains)])
    if adversary == "excess":
        shifts = None
    elif adversary == "kl":
        shifts = own - np.asarray(entropies, dtype=np.float64)
    else:
        shifts = own
    w, res, _ = best_static_gate(logps, shifts=shifts, weights=weights, prior=prior)
    return w, res


@dataclass
class Method:
    """One model's per-window log-probabilities on each domain and its mass."""

    name: str
    log_prob: list[np.ndarray]
    z: float = 1.0
    z_se: float = 0.0
    note: str = ""


def _static(name: str, domains, w: np.ndarray, note: str = "") -> Method:
    with np.errstate(divide="ignore"):
        lw = np.log(w)
    return Method(name, [logsumexp(d.logp.numpy() + lw, axis=1) for d in domains], note=note)


def score(methods: list[Method], domains: list[SampleSet], mixtures: list[np.ndarray], T: int) -> list[dict]:
    """Per-domain and per-mixture NLL and excess per token with standard errors; worst case over mixtures."""
    rows = []
    lam = np.array(mixtures)
    for m in methods:
        nll, nll_se, exc, exc_se = [], [], [], []
        for k, (d, lp) in enumerate(zip(domains, m.log_prob)):
            own = d.logp[:, k].numpy()
            for vals, mean, se in ((-lp / T, nll, nll_se), ((own - lp) / T, exc, exc_se)):
                mean.append(float(vals.mean()))
                se.append(float(vals.std(ddof=1) / math.sqrt(len(vals))) if len(vals) > 1 else float("nan"))
        nll, nll_se, exc, exc_se = map(np.array, (nll, nll_se, exc, exc_se))
        mix_nll, mix_exc = lam @ nll, lam @ exc
        mix_nll_se, mix_exc_se = np.sqrt(lam**2 @ nll_se**2), np.sqrt(lam**2 @ exc_se**2)
        iw, iwn = int(np.argmax(mix_exc)), int(np.argmax(mix_nll))
        rows.append({
            "method": m.name, "z": m.z, "z_se": m.z_se, "note": m.note,
            "nll": nll.tolist(), "nll_se": nll_se.tolist(), "excess": exc.tolist(), "excess_se": exc_se.tolist(),
            "mixture_nll": mix_nll.tolist(), "mixture_nll_se": mix_nll_se.tolist(),
            "mixture_excess": mix_exc.tolist(), "mixture_excess_se": mix_exc_se.tolist(),
            "worst_excess": float(mix_exc[iw]), "worst_excess_se": float(mix_exc_se[iw]),
            "worst_excess_mixture": lam[iw].tolist(),
            "worst_nll": float(mix_nll[iwn]), "worst_nll_se": float(mix_nll_se[iwn]),
            "worst_nll_mixture": lam[iwn].tolist(),
        })
    return rows


def evaluate_gate(loaded: LoadedGate, test_path, *, mixtures: list[np.ndarray] | None = None,
                  static_from=None) -> dict:
    """Score the gate and the baselines on a cached test split (see the module docstring).

    The best static gate is solved on the windows of ``static_from`` (a cached split of the
    same experts, e.g. the gate's training DATA.npz) when given; otherwise on the test
    windows themselves, where it is an oracle (its weights have seen the test data).
    """
    info = describe_data(test_path)
    check_gate_matches(loaded.meta, info)
    domains, experts = load_npz(test_path)
    p = domains[0].p
    if experts is None:
        raise InputError(f"{test_path} holds no expert samples (expert_logp_k): Z cannot be estimated")
    T = info["window"] or 1
    mixtures = default_mixtures(p) if mixtures is None else mixtures
    if any(len(lam) != p for lam in mixtures):
        raise InputError(f"mixtures must have p={p} entries")
    names = info["expert_names"] or [str(k) for k in range(p)]

    def gated(log_gates):
        return [mixture_log_prob(lg, d.logp).numpy() for lg, d in zip(log_gates, domains)]

    lg_dom = [gate_log_probs(loaded, d) for d in domains]
    z, z_se = z_with_se([gate_log_probs(loaded, e) for e in experts])
    methods = [Method(f"robust gate ({loaded.kind})", gated(lg_dom), z, z_se)]
    for j in range(p):
        methods.append(_static(f"expert {names[j]} alone", domains, np.eye(p)[j]))
    methods.append(_static("uniform static", domains, np.full(p, 1.0 / p)))
    if static_from is None:
        static_domains, where = domains, "the test windows (an oracle)"
    else:
        check_gate_matches(loaded.meta, describe_data(static_from), what="gate's data and --static-from")
        static_domains, where = load_npz(static_from)[0], str(static_from)
        if static_domains[0].p != p:
            raise InputError(f"{static_from} has p={static_domains[0].p} domains, the test split p={p}")
    w, res, log_c = best_static_gate([d.logp.numpy() for d in static_domains])
    methods.append(_static("best static", domains, w, note=f"w = {np.round(w, 4).tolist()} fitted on {where} "
                                                             f"({res.status}, gap {res.gap:.1e})"))
    post_dom = gated([posterior_log_gate(d.logp) for d in domains])
    pz, pz_se = z_with_se([posterior_log_gate(e.logp) for e in experts])
    methods.append(Method("posterior (BTM/DEMix), raw", post_dom, pz, pz_se, note="not normalised: Z != 1"))
    methods.append(Method("posterior (BTM/DEMix), renormalised", [lp - math.log(pz) for lp in post_dom], 1.0,
                          0.0, note="log pi_g - log Zhat"))
    rows = score(methods, domains, mixtures, T)
    return {
        "test": str(test_path), "window": T, "experts": names, "domains": info["domain_names"] or names,
        "windows": [d.m for d in domains], "expert_samples": [e.m for e in experts],
        "mixtures": [lam.tolist() for lam in mixtures], "units": "nats per token",
        "best_static": {"w": w.tolist(), "worst_excess": (res.value - log_c) / T, "status": res.status,
                        "gap": res.gap, "lam": res.lam.tolist(), "fitted_on": where},
        "methods": rows,
    }


def _fmt(v, se) -> str:
    return f"{v:.4f} ± {se:.4f}"


def markdown_table(out: dict) -> str:
    """The evaluation as a markdown table (excess per domain, worst mixture, Z)."""
    doms = out["domains"]
    head = ["method"] + [f"excess {d}" for d in doms] + ["worst excess", "worst NLL", "Z"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in out["methods"]:
        cells = [r["method"]] + [_fmt(v, s) for v, s in zip(r["excess"], r["excess_se"])]
        cells += [_fmt(r["worst_excess"], r["worst_excess_se"]), _fmt(r["worst_nll"], r["worst_nll_se"]),
                  _fmt(r["z"], r["z_se"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(out: dict, directory) -> list[Path]:
    """``evaluation.md`` (table), ``evaluation.json`` and ``evaluation.png`` (excess per mixture) in directory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    md = d / "evaluation.md"
    md.write_text(f"# Evaluation on {out['test']}\n\nT = {out['window']} tokens per window; {out['units']}; "
                  f"excess over each domain's own expert; worst case over {len(out['mixtures'])} mixtures.\n\n"
                  + markdown_table(out))
    js = d / "evaluation.json"
    js.write_text(json.dumps(out, indent=1))
    fig, ax = plt.subplots(figsize=(8, 4))
    n_mix = len(out["mixtures"])
    width = 0.8 / len(out["methods"])
    for i, r in enumerate(out["methods"]):
        ax.bar(np.arange(n_mix) + i * width, r["mixture_excess"], width, yerr=r["mixture_excess_se"],
               label=r["method"])
    ax.set_xticks(np.arange(n_mix) + 0.4 - width / 2)
    ax.set_xticklabels(["(" + ",".join(f"{v:.2g}" for v in lam) + ")" for lam in out["mixtures"]], rotation=30,
                       fontsize=7)
    ax.set_ylabel("excess NLL (nats per token)")
    ax.set_xlabel("mixture of domains")
    ax.legend(fontsize=6)
    fig.tight_layout()
    png = d / "evaluation.png"
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return [md, js, png]
