"""The real-world experiment: four real text genres, parameter-matched neural experts and monolithic models.

Domains are the byte-level genres of :mod:`synthetic.corpora` (C source, a dictionary,
technical prose, scripture), split by document hash. For one run (a model seed and a
data subsample):

- each domain's **expert** is a byte-level causal transformer (V = 256) trained on
  windows of that domain's training documents;
- the **monolithic** models have as many parameters as all experts and the gate
  together (the width is chosen to match, within :data:`PARAMETER_MATCH`) and see the
  same total number of training tokens as all experts together, on the pooled windows
  at equal domain weights, at DoReMi's weights (a proxy run on the excess loss over
  each domain's expert), and at the gate's least-favourable mixture ``lam``;
- the **gate** is a small causal sequence model over the window's bytes (a few per cent
  of an expert's parameters) fitted by :func:`modular.fit_robust_gate` with the excess
  adversary (real text has no known entropy: ``a_k = KL(D_k || pi_g) - KL(D_k ||
  pi_k)``) on validation windows of each domain, with Z estimated without bias from
  windows sampled from each expert;
- the **routed model** is the causal router of structural distillation, trained on
  windows sampled from ``pi_g`` by rejection sampling;
- the static baselines are the **uniform gate**, the **best static gate** (the robust
  constant gate, solved exactly on the validation log-probabilities), and the
  **posterior gate** of Branch-Train-Merge/DEMix ``g(x, k) ∝ pi_k(x)`` (not normalised:
  its mass Z is reported, and it is scored raw and renormalised).

Every model is scored on test windows of each domain: NLL per byte,
``-mean log q(x) / T``; a test mixture's NLL is ``sum_k lam_k NLL_k`` (cross-entropy is
linear in the mixture). The window length T matters: for nearly disjoint domains a
sequence-level gate that cannot tell the domain pays about ``log p / T`` nats per byte,
so the experiment reports the worst case against T as well.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from modular import CausalSequenceGate, fit_robust_gate, gated_log_prob, sample_set
from modular.distill import routed_log_prob, router_probs, train_router
from modular.evaluate import best_static_gate, posterior_log_gate, z_with_se
from modular.sampling import rejection_sample
from synthetic.baselines import train_doremi, train_on_weights
from synthetic.corpora import REAL_GENRES
from synthetic.experiments.common import lam_label, seed_streams, single_thread_torch
from synthetic.models import TorchSequenceModel
from synthetic.text import load_text_corpus
from theory.errors import InputError

V = 256
#: Parameter counts of matched models agree within this fraction.
PARAMETER_MATCH = 0.05

# Model labels: the tables, captions and tests refer to these constants, never to substrings.
GATE = "robust gate"
UNIFORM = "uniform static gate"
BEST_STATIC = "best static gate"
POSTERIOR_RAW = "posterior gate (raw)"
POSTERIOR = "posterior gate (renormalised)"
ROUTED = "routed model"
MONO_EVEN = "monolithic (even)"
MONO_DOREMI = "monolithic (DoReMi)"
MONO_LAMSTAR = "monolithic (lam*)"


def test_mixtures(p: int) -> np.ndarray:
    """The test mixtures: every vertex, every pair midpoint, the centre and one skewed mixture."""
    eye = np.eye(p)
    pairs = [(eye[i] + eye[j]) / 2 for i in range(p) for j in range(i + 1, p)]
    skewed = np.arange(p, 0, -1, dtype=np.float64)
    return np.vstack([eye, *pairs, np.full(p, 1.0 / p), skewed / skewed.sum()])


def transformer_parameters(width: int, T: int, heads: int = 2) -> int:
    """Parameters of :class:`synthetic.models.CausalTransformer` at this width (counted, not modelled)."""
    return TorchSequenceModel(V, T, width, heads=heads, device="cpu").n_parameters


def matched_width(target: int, T: int, heads: int = 2) -> int:
    """The transformer width (a multiple of ``heads``) whose parameter count is closest to ``target``."""
    lo, hi = heads, heads
    while transformer_parameters(hi, T, heads) < target:
        lo, hi = hi, hi * 2
    best = min(range(lo, hi + 1, heads), key=lambda w: abs(transformer_parameters(w, T, heads) - target))
    return best


def gate_parameters(gate: torch.nn.Module) -> int:
    return sum(p.numel() for p in gate.parameters())


def _windows(split, T: int, m: int, rng) -> np.ndarray:
    w = split.windows(T)
    return w[np.sort(rng.choice(len(w), size=min(m, len(w)), replace=False))]


def _train_windows(split, T: int, m: int, fraction: float, rng) -> np.ndarray:
    """Windows from a random ``fraction`` of the training documents (the data subsample)."""
    keep = rng.permutation(len(split.docs))[: max(1, int(round(fraction * len(split.docs))))]
    chunks = [np.lib.stride_tricks.sliding_window_view(split.docs[i], T)[::T] for i in np.sort(keep)
              if split.docs[i].size >= T]
    if not chunks:
        raise InputError(f"text genre {split.domain!r}: no training document of at least T={T} bytes in the subsample")
    w = np.concatenate(chunks).astype(np.int64)
    return w[np.sort(rng.choice(len(w), size=min(m, len(w)), replace=False))]


def sample_windows(model: TorchSequenceModel, m: int, T: int, generator: torch.Generator) -> torch.Tensor:
    """``m`` windows of length ``T`` drawn token by token from a transformer (m x T, int64)."""
    net = model.net.eval()
    x = torch.full((m, 1), V, dtype=torch.long)  # BOS
    with torch.no_grad():
        for t in range(T):
            probs = net(x)[:, t].exp().double()
            x = torch.cat([x, torch.multinomial(probs, 1, generator=generator)], dim=1)
    return x[:, 1:]


def window_log_probs(models, x) -> np.ndarray:
    """``log pi_k(x)`` of every window under every model, (m x p)."""
    return np.column_stack([m.token_log_probs(np.asarray(x)).sum(axis=1) for m in models])


def token_log_probs(models, x) -> np.ndarray:
    """``log pi_k(x_t | x_<t)`` along every window, (m x T x p)."""
    return np.stack([m.token_log_probs(np.asarray(x)) for m in models], axis=2)


def _nll(logq: np.ndarray, T: int) -> float:
    return float(-np.mean(logq) / T)


def real_world(config: dict) -> dict:
    """Train, fit and score every model of one run; see the module docstring.

    config: ``genres``, ``T`` (training window), ``T_sweep`` (window lengths scored for the
    T figure, each <= T, empty for no sweep), ``expert_width``, ``gate_embed``,
    ``gate_hidden``, ``train_windows`` (per domain), ``train_fraction`` (the data
    subsample), ``steps``, ``batch_size``, ``lr``, ``m_val``, ``m_test``, ``m_expert``,
    ``fit_steps`` (the most steps: the fit stops once its residuals stay within tolerance), ``fit_batch``, ``fit_lr``, ``lam_lr``, ``router_samples``,
    ``router_steps``, ``seed`` (models), ``subsample`` (data).
    """
    t_start = time.perf_counter()
    genres = list(config["genres"])
    p, T, seed = len(genres), config["T"], config["seed"]
    corpus = load_text_corpus(genres)
    data_rng = np.random.default_rng(np.random.SeedSequence([config["subsample"], 1]))
    train = [_train_windows(corpus[g]["train"], T, config["train_windows"], config["train_fraction"], data_rng)
             for g in genres]
    val = [_windows(corpus[g]["val"], T, config["m_val"], data_rng) for g in genres]
    test = [_windows(corpus[g]["test"], T, config["m_test"], data_rng) for g in genres]
    seeds = np.random.SeedSequence([seed, 2]).generate_state(8)
    fit_kwargs = dict(steps=config["steps"], batch_size=config["batch_size"], lr=config["lr"])
    timings = {}
    with single_thread_torch():
        t0 = time.perf_counter()
        (expert_seeds,) = seed_streams(seed, len(genres), key=3)
        experts = [TorchSequenceModel(V, T, config["expert_width"], seed=expert_seeds[k], name=f"expert {g}",
                                      device="cpu").fit(train[k], **fit_kwargs) for k, g in enumerate(genres)]
        timings["experts"] = time.perf_counter() - t0
        n_expert = experts[0].n_parameters
        gate_size = gate_parameters(CausalSequenceGate(V, p, embed=config["gate_embed"], hidden=config["gate_hidden"]))
        target = p * n_expert + gate_size
        width = matched_width(target, T)
        # One monolithic step sees a batch of every domain: the same tokens per step as all experts' steps.
        t0 = time.perf_counter()
        mono = {MONO_EVEN: train_on_weights(train, np.full(p, 1.0 / p), V=V, T=T, width=width, seed=int(seeds[2]),
                                            **fit_kwargs)}
        mono[MONO_DOREMI], doremi_lam = train_doremi(train, experts, V=V, T=T, width=width, seed=int(seeds[2]),
                                                     **fit_kwargs)
        timings["monolithic"] = time.perf_counter() - t0

        generator = torch.Generator().manual_seed(int(seeds[3]))
        t0 = time.perf_counter()
        expert_windows = [sample_windows(e, config["m_expert"], T, generator) for e in experts]
        val_tok = [token_log_probs(experts, x) for x in val]
        exp_tok = [token_log_probs(experts, x.numpy()) for x in expert_windows]
        exp_logp = [lp.sum(axis=1) for lp in exp_tok]
        timings["scoring"] = time.perf_counter() - t0

        def fit_gate(Tw: int):
            """The robust sequence gate on windows of length Tw (prefixes of the length-T windows)."""
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seeds[1]))
                g = CausalSequenceGate(V, p, embed=config["gate_embed"], hidden=config["gate_hidden"])
            dom = [sample_set(lp[:, :Tw].sum(axis=1), features=x[:, :Tw], name=f"val {name}")
                   for name, lp, x in zip(genres, val_tok, val)]
            exp = [sample_set(lp[:, :Tw].sum(axis=1), features=x[:, :Tw].numpy(), name=f"expert {name}")
                   for name, lp, x in zip(genres, exp_tok, expert_windows)]
            res = fit_robust_gate(g, dom, exp, adversary="excess", steps=config["fit_steps"],
                                  batch_size=config["fit_batch"], lr=config["fit_lr"], lam_lr=config["lam_lr"],
                                  until_converged=True, seed=int(seeds[4]))
            return g.eval(), res

        t0 = time.perf_counter()
        gates = {Tw: fit_gate(Tw) for Tw in sorted(set(config["T_sweep"]) | {T})}
        gate, fit = gates[T]
        timings["gate fit"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        mono[MONO_LAMSTAR] = train_on_weights(train, fit.lam, V=V, T=T, width=width, seed=int(seeds[2]), **fit_kwargs)
        timings["monolithic"] += time.perf_counter() - t0

        # The routed model: a causal router trained on exact samples of pi_g (rejection from p q0).
        t0 = time.perf_counter()

        def log_experts(x):
            return torch.as_tensor(window_log_probs(experts, x.numpy()))

        def log_gate(x):
            with torch.no_grad():
                return torch.log_softmax(gate(x).double(), dim=1)

        def sample_q0(m, gen):
            counts = torch.bincount(torch.randint(p, (m,), generator=gen), minlength=p).tolist()
            parts = [sample_windows(e, c, T, gen) for e, c in zip(experts, counts) if c > 0]
            return torch.cat(parts)[torch.randperm(m, generator=gen)]

        routed_x, acceptance = rejection_sample(config["router_samples"], sample_q0, log_experts, log_gate,
                                                generator=generator)
        router = CausalSequenceGate(V, p, embed=config["gate_embed"], hidden=config["gate_hidden"])
        rfit = train_router(routed_x.numpy(), token_log_probs(experts, routed_x.numpy()), vocab=V, router=router,
                            steps=config["router_steps"], seed=int(seeds[5]))
        timings["router"] = time.perf_counter() - t0

        # Static baselines at each window length, from the validation and expert-sample windows:
        # the best static gate (robust constant weights, solved exactly by theory on the excess game)
        # and the mass Z (with its standard error) of the posterior gate g(x,k) = pi_k(x) / sum_j pi_j(x).
        static, z_posterior = {}, {}
        for Tw in gates:
            static[Tw] = best_static_gate([lp[:, :Tw].sum(axis=1) for lp in val_tok])[0]
            z_posterior[Tw] = z_with_se([posterior_log_gate(torch.as_tensor(lp[:, :Tw].sum(axis=1)))
                                         for lp in exp_tok])

        t0 = time.perf_counter()
        per_domain: dict[str, list[float]] = {}
        sweep = []
        for k, x in enumerate(test):
            tok_lp = token_log_probs(experts, x)
            mono_tok = {label: model.token_log_probs(x) for label, model in mono.items()}
            rp = router_probs(rfit.router, x)
            for Tw, (gate_w, _) in gates.items():
                lp = tok_lp[:, :Tw].sum(axis=1)
                with np.errstate(divide="ignore"):
                    log_w = np.log(static[Tw])
                posterior = gated_log_prob(posterior_log_gate(torch.as_tensor(lp)), torch.as_tensor(lp)).numpy()
                scores = {UNIFORM: np.logaddexp.reduce(lp - math.log(p), axis=1),
                          BEST_STATIC: np.logaddexp.reduce(lp + log_w, axis=1),
                          POSTERIOR_RAW: posterior, POSTERIOR: posterior - math.log(z_posterior[Tw][0])}
                for j, g in enumerate(genres):
                    scores[f"expert {g}"] = lp[:, j]
                for label, tl in mono_tok.items():
                    scores[label] = tl[:, :Tw].sum(axis=1)
                with torch.no_grad():
                    scores[GATE] = gated_log_prob(gate_w(torch.as_tensor(x[:, :Tw])).double(),
                                                  torch.as_tensor(lp)).numpy()
                # The router is causal: the routed model of a prefix is its first Tw factors.
                scores[ROUTED] = routed_log_prob(rp[:, :Tw], tok_lp[:, :Tw])
                if Tw == T:
                    for label, s in scores.items():
                        per_domain.setdefault(label, [0.0] * p)[k] = _nll(s, T)
                for label, s in scores.items():
                    sweep.append({"model": label, "domain": genres[k], "T": Tw, "seed": seed,
                                  "subsample": config["subsample"], "nll_per_byte": _nll(s, Tw)})
        timings["test scoring"] = time.perf_counter() - t0

    rows = []
    for lam in test_mixtures(p):
        for label, nll in per_domain.items():
            rows.append({"model": label, "mixture": lam_label(lam), "seed": seed, "subsample": config["subsample"],
                         "nll_per_byte": float(lam @ np.asarray(nll))})
    params = {f"expert {g}": {"frozen": e.n_parameters, "trainable": 0} for g, e in zip(genres, experts)}
    params[GATE] = {"frozen": p * n_expert, "trainable": gate_size}
    params[ROUTED] = {"frozen": p * n_expert, "trainable": gate_parameters(rfit.router)}
    for label, model in mono.items():
        params[label] = {"frozen": 0, "trainable": model.n_parameters}
    timings["total"] = time.perf_counter() - t_start
    fits = {str(Tw): {"lam": f.lam.tolist(), "z": f.z} for Tw, (_, f) in gates.items()}
    return {"rows": rows, "sweep": sweep, "per_domain": per_domain, "lam": fit.lam.tolist(), "z": fit.z, "fits": fits,
            "z_estimator": fit.z_estimator, "doremi_lam": np.asarray(doremi_lam).tolist(),
            "z_posterior": z_posterior[T][0], "z_posterior_se": z_posterior[T][1],
            "best_static": static[T].tolist(), "fit_status": fit.status, "fit_gap": fit.gap, "acceptance": acceptance, "monolithic_width": width, "parameters": params,
            "timings": timings, "checksums": {f"text/{g}/{s}": corpus[g][s].checksum for g in genres
                                              for s in ("train", "val", "test")}}
