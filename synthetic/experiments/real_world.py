"""The real-world experiment: four real text genres, parameter-matched neural experts and monolithic models.

Domains are the byte-level genres of :mod:`synthetic.corpora` (C source, a dictionary,
technical prose, scripture), split by document hash (:func:`synthetic.text.load_text_corpus`).
For one run (a model seed and a data subsample):

- each domain's **expert** is a byte-level causal transformer (V = 256) trained on
  windows of a random fraction of that domain's training documents;
- the **monolithic** models have as many parameters as all experts and the gate
  together (the width is chosen to match, within :data:`PARAMETER_MATCH`) and see the
  same total number of training tokens as all experts together, on the pooled windows
  at equal domain weights, at DoReMi's weights (a proxy, the size of one expert, run on
  the excess loss over each domain's expert), and at the gate's least-favourable mixture
  ``lam``.

Everything else goes through the tools of :mod:`modular`, so this experiment is also
their end-to-end test. One excerpt of each held-out (validation or test) document is
given to :func:`modular.cache.build_cache` (what ``python -m modular cache`` runs), which
splits the excerpts by hash into DATA / VAL / TEST and caches every expert's per-token
log-probabilities on their windows of T bytes and on M samples of each expert. Then:

- the **gate**, a small transformer over the window's bytes
  (:class:`modular.gates.TransformerSequenceGate`, a few per cent of an expert), is
  fitted on DATA.npz by :func:`modular.fit_robust_gate` (the function ``python -m modular
  fit`` calls) with the excess adversary (real text has no known entropy:
  ``a_k = KL(D_k || pi_g) - KL(D_k || pi_k)``) and the unbiased expert-sample Z, started at
  the best constant gate of DATA's windows and selected on VAL.npz's windows (with Z held
  out on VAL's expert samples), and saved with :func:`modular.cache.gate_meta`;
- the **routed model** is distilled by ``python -m modular distill`` (run in-process):
  a causal router trained on the cached expert samples accepted by rejection;
- ``python -m modular evaluate`` (in-process) scores the gate, each expert, the
  **uniform gate**, the **best static gate** (the robust constant gate, solved exactly)
  and the **posterior gate** of Branch-Train-Merge/DEMix ``g(x, k) ∝ pi_k(x)`` (raw, and
  renormalised by its Z) on TEST.npz; the monolithic and routed models are scored on the
  same windows by the same :func:`modular.evaluate.score`.

NLL per byte is ``-mean log q(x) / T``; a test mixture's NLL is ``sum_k lam_k NLL_k``
(cross-entropy is linear in the mixture). The window length T matters: for nearly
disjoint domains a sequence-level gate that cannot tell the domain pays about
``log p / T`` nats per byte, so the gate is refitted and everything rescored on the
length-``Tw`` prefixes of the cached windows (:func:`prefix_split`) for each ``Tw`` of the
sweep.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from modular import cli
from modular.cache import build_cache, gate_meta, write_npz
from modular.data import check_excess_defined, load_npz
from modular.distill import routed_log_prob, router_probs
from modular.evaluate import Method, best_static_for, score
from modular.gate_io import load_gate, save_gate
from modular.gates import TransformerSequenceGate, start_at_constant
from modular.primal_dual import _finite_or_none, fit_robust_gate
from synthetic.baselines import train_doremi, train_on_weights
from synthetic.expert_io import as_expert
from synthetic.experiments.common import lam_label, seed_streams, single_thread_torch
from synthetic.models import TorchSequenceModel, resolve_precision
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
#: The names :func:`modular.evaluate.evaluate_gate` gives its methods -> the labels here.
EVALUATE_NAMES = {"robust gate (transformer)": GATE, "uniform static": UNIFORM, "best static": BEST_STATIC,
                  "posterior (BTM/DEMix), raw": POSTERIOR_RAW, "posterior (BTM/DEMix), renormalised": POSTERIOR}


def test_mixtures(p: int) -> np.ndarray:
    """The test mixtures: every vertex, every pair midpoint, the centre and one skewed mixture."""
    eye = np.eye(p)
    pairs = [(eye[i] + eye[j]) / 2 for i in range(p) for j in range(i + 1, p)]
    skewed = np.arange(p, 0, -1, dtype=np.float64)
    return np.vstack([eye, *pairs, np.full(p, 1.0 / p), skewed / skewed.sum()])


def transformer_parameters(width: int, T: int, heads: int = 2) -> int:
    """Parameters of :class:`synthetic.models.CausalTransformer` at this width (counted, not modelled)."""
    return TorchSequenceModel(V, T, width, heads=heads, device="cpu").n_parameters


#: Matched widths prefer a multiple of this many units per head when its count is within
#: :data:`ALIGNED_MATCH` of the target: vectorised kernels handle such widths whole (a training
#: step of 64 windows, T = 256, float32, one CPU thread: 8.4 s at width 544 against 10.0 s at 546).
ALIGN_PER_HEAD = 8
ALIGNED_MATCH = 0.01


def matched_width(target: int, T: int, heads: int = 2) -> int:
    """The transformer width whose parameter count is closest to ``target``.

    Among multiples of ``heads``; a multiple of ``ALIGN_PER_HEAD * heads`` is preferred when its
    count is within ``ALIGNED_MATCH`` of the target (always within :data:`PARAMETER_MATCH`).
    """
    @functools.lru_cache(maxsize=None)
    def miss(w: int) -> int:
        return abs(transformer_parameters(w, T, heads) - target)

    def below(w: int) -> bool:
        return transformer_parameters(w, T, heads) < target

    # The count grows with the width: bisect for the crossing (lo below the target, hi at or above it),
    # so only the widths beside it are counted (each count builds the model).
    lo, hi = 0, heads
    while below(hi):
        lo, hi = hi, hi * 2
    while hi - lo > heads:
        mid = (lo + hi) // (2 * heads) * heads
        lo, hi = (mid, hi) if below(mid) else (lo, mid)
    step = ALIGN_PER_HEAD * heads
    aligned = [w for w in {lo // step * step, -(-hi // step) * step} if w > 0 and miss(w) <= ALIGNED_MATCH * target]
    return min(aligned or [w for w in (lo, hi) if w > 0], key=miss)


def gate_parameters(gate: torch.nn.Module) -> int:
    return sum(p.numel() for p in gate.parameters())


@functools.lru_cache(maxsize=2)
def _corpus(genres: tuple[str, ...]):
    """The genres' splits, read once per process (a sweep runs several configurations in one worker)."""
    return load_text_corpus(list(genres))


def make_gate(p: int, T: int, width: int, seed: int) -> TransformerSequenceGate:
    """The sequence gate: one small transformer block over the window's bytes (:mod:`modular.gates`)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TransformerSequenceGate(V, p, T, width=width)


def _train_windows(split, T: int, m: int, fraction: float, rng) -> np.ndarray:
    """Windows from a random ``fraction`` of the training documents (the data subsample)."""
    keep = rng.permutation(len(split.docs))[: max(1, int(round(fraction * len(split.docs))))]
    chunks = [np.lib.stride_tricks.sliding_window_view(split.docs[i], T)[::T] for i in np.sort(keep)
              if split.docs[i].size >= T]
    if not chunks:
        raise InputError(f"text genre {split.domain!r}: no training document of at least T={T} bytes in the subsample")
    w = np.concatenate(chunks).astype(np.int64)
    return w[np.sort(rng.choice(len(w), size=min(m, len(w)), replace=False))]


def held_out_excerpts(splits, T: int, windows: int, excerpt_windows: int, rng) -> list[str]:
    """Excerpts of held-out documents for the cache, as text whose code points are the bytes (latin-1).

    Documents (of the given splits, none of which the experts or monolithic models train
    on) are taken in random order; each gives one excerpt of at most ``excerpt_windows``
    windows of T bytes (more when the genre has fewer than ``windows / excerpt_windows``
    documents) at a random offset, until the excerpts hold ``windows`` windows.
    One excerpt per document keeps the cache's own split (by the excerpt's hash)
    document-disjoint.
    """
    docs = [d for s in splits for d in s.docs if d.size >= T]
    # A genre of few long documents (perl's POD: about 40 held out) gives longer excerpts.
    per_doc = max(excerpt_windows, math.ceil(windows / max(len(docs), 1)))
    out, total = [], 0
    for i in rng.permutation(len(docs)):
        d = docs[i]
        n = min(d.size // T, per_doc)
        start = int(rng.integers(0, d.size - n * T + 1))
        out.append(d[start:start + n * T].tobytes().decode("latin-1"))
        total += n
        if total >= windows:
            break
    return out


class Latin1Bytes:
    """Text whose code points are bytes (0..255) to byte ids and back: exact for any byte string."""

    def encode(self, text: str) -> list[int]:
        return list(text.encode("latin-1"))

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("latin-1")


def state_sha256(model: TorchSequenceModel) -> str:
    """sha256 of a model's parameters (names and float32 bytes): the expert's identity in the cache."""
    h = hashlib.sha256()
    for name, t in sorted(model.net.state_dict().items()):
        h.update(name.encode() + b"\0" + t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def prefix_split(src, dst, Tw: int) -> Path:
    """A cached split cut to the first ``Tw`` tokens of every window and expert sample.

    The prefixes of samples of ``pi_k`` are samples of its length-``Tw`` marginal, and a
    causal expert's log-probability of a prefix is the sum of its first ``Tw`` factors.
    """
    with np.load(src, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    for key in list(arrays):
        if key.startswith(("feat_", "expert_feat_", "token_logp_", "expert_token_logp_")):
            arrays[key] = arrays[key][:, :Tw]
    for key in list(arrays):
        if key.startswith(("token_logp_", "expert_token_logp_")):
            arrays[key.replace("token_logp_", "logp_")] = arrays[key].sum(axis=1)
    arrays["window"] = np.array(Tw)
    write_npz(dst, arrays)
    return Path(dst)


def _run_cli(argv: list[str]) -> tuple[int, str]:
    """``python -m modular ARGV`` in this process; (exit status, stdout)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    if code not in (0, 3):
        raise InputError(f"python -m modular {' '.join(argv)} exited {code}: {err.getvalue().strip()}")
    return code, out.getvalue()


def tolerances(config: dict, T: int) -> tuple[float, float]:
    """The fit's tolerances at window length T: ``(tol_gap, tol_z)``, both from one accuracy per byte.

    The table reports NLL per byte, so the gate's residuals are held to what they can move
    there, ``tol_per_byte`` (nats per byte): the adversary's gap to ``T tol_per_byte`` nats
    per window, and the mass to ``|log Z| <= T tol_per_byte``, i.e. ``|Z - 1| <=
    expm1(T tol_per_byte)`` (renormalising a gate of mass Z moves its NLL per byte by
    ``log Z / T``).
    """
    per_byte = config["tol_per_byte"]
    return per_byte * T, math.expm1(per_byte * T)


def fit_gate(data_path, config: dict, T: int, seed: int, device=None, val_path=None):
    """The robust gate on a cached split, fitted as ``python -m modular fit`` fits one, saved beside it.

    The same function (:func:`modular.fit_robust_gate`) on the same sets
    (:func:`modular.data.load_npz`), excess adversary, unbiased expert-sample Z, stopping
    once the whole-set residuals stay within tolerance (:func:`tolerances`); what ``fit
    --start best-static --validation VAL.npz`` does: the gate starts at the best constant
    gate of the training windows (solved exactly), the returned check is the one with the
    best robust objective on the validation windows (among those within tolerance), and the
    held-out Z is measured on the validation split's expert samples. The gate is saved with
    the metadata the tools check (:func:`modular.cache.gate_meta`).
    """
    domains, experts = load_npz(data_path)
    check_excess_defined(domains)
    p = domains[0].p
    gate = make_gate(p, T, config["gate_width"], seed)
    w, static = best_static_for(domains, adversary="excess")
    start_at_constant(gate, w)
    val_d, val_e = load_npz(val_path) if val_path is not None else (None, None)
    tol_gap, tol_z = tolerances(config, T)
    # The losses are nats per window (T bytes): steps per byte keep the game's pace the same at every T.
    res = fit_robust_gate(gate, domains, experts, adversary="excess", z_estimator="expert-samples",
                          steps=config["fit_steps"], batch_size=config["fit_batch"], lr=config["fit_lr"],
                          lr_schedule=config["lr_schedule"], lam_lr=config["lam_lr"] / T, mu_lr=config["mu_lr"] * T,
                          mu0=config["mu0"], gate_iterate=config["gate_iterate"], lam0=static.lam,
                          weight_decay=config.get("fit_weight_decay", 0.0), tol_gap=tol_gap, tol_z=tol_z,
                          until_converged=True, check_every=config["check_every"], seed=seed, device=device,
                          dtype=getattr(torch, config.get("fit_dtype", "float64")),
                          validation=val_d, validation_experts=val_e)
    summary = res.summary()
    path = Path(data_path).with_name(f"gate_T{T}.pt")
    save_gate(path, res.gate.cpu(), meta=_finite_or_none(gate_meta(data_path, summary, kind="transformer")))
    return path, res


def _load_split(path, p: int):
    with np.load(path, allow_pickle=False) as f:
        return [f[f"feat_{k}"] for k in range(p)], [f[f"token_logp_{k}"] for k in range(p)]


def _nll_rows(evaluation: dict) -> dict[str, list[float]]:
    """label -> per-domain NLL per byte, from :func:`modular.evaluate.evaluate_gate` / :func:`score` rows."""
    names = {f"expert {e} alone": f"expert {e}" for e in evaluation["experts"]}
    return {EVALUATE_NAMES.get(r["method"], names.get(r["method"], r["method"])): r["nll"]
            for r in evaluation["methods"]}


def real_world(config: dict) -> dict:
    """Train, cache, fit and score every model of one run; see the module docstring.

    config: ``genres``, ``T`` (window), ``T_sweep`` (shorter window lengths scored for the T
    figure, the gate refitted on prefixes; empty for no sweep), ``expert_width``,
    ``gate_width``, ``train_windows`` (per domain), ``train_fraction`` (the data
    subsample), ``steps``, ``batch_size``, ``lr`` (experts and monolithic models),
    ``cache_windows`` and ``excerpt_windows`` (held-out text given to the cache, per
    genre), ``cache_split``, ``m_expert`` (expert samples per split), ``fit_steps`` (the
    most steps: the fit stops once its residuals stay within tolerance), ``fit_batch``,
    ``fit_lr``, ``lr_schedule``, ``lam_lr`` and ``mu_lr`` (per byte: the fit's steps are ``lam_lr / T``
    on lam and ``mu_lr T`` on the multiplier, whose losses are nats per window), ``mu0`` (the
    multiplier's start), ``gate_iterate``,
    ``fit_weight_decay`` (optional, AdamW's), ``tol_per_byte`` (the accuracy per byte the fit's
    residuals are held to, :func:`tolerances`), ``check_every``, ``router_steps``, ``seed``
    (models), ``subsample`` (data), ``device`` (None: CUDA when available); optional
    ``precision`` (training of experts and monolithic models: ``"float32"``, ``"bfloat16"``
    autocast, or ``"auto"``, bfloat16 where it is native), ``eval_dtype`` (their evaluation and sampling,
    ``"float64"`` or ``"float32"``) and ``fit_dtype`` (the gate fit's, ``"float64"`` or
    ``"float32"``).
    """
    t_start = time.perf_counter()
    genres = list(config["genres"])
    p, T, seed = len(genres), config["T"], config["seed"]
    device = config.get("device")
    corpus = _corpus(tuple(genres))
    data_rng = np.random.default_rng(np.random.SeedSequence([config["subsample"], 1]))
    train = [_train_windows(corpus[g]["train"], T, config["train_windows"], config["train_fraction"], data_rng)
             for g in genres]
    held_out = {g: held_out_excerpts([corpus[g]["val"], corpus[g]["test"]], T, config["cache_windows"],
                                     config["excerpt_windows"], data_rng) for g in genres}
    seeds = np.random.SeedSequence([seed, 2]).generate_state(8)
    fit_kwargs = dict(steps=config["steps"], batch_size=config["batch_size"], lr=config["lr"],
                      precision=config.get("precision", "float32"))
    eval_dtype = config.get("eval_dtype", "float64")
    timings = {}
    with single_thread_torch(), tempfile.TemporaryDirectory(prefix="real_world_") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        (expert_seeds,) = seed_streams(seed, len(genres), key=3)
        experts = [TorchSequenceModel(V, T, config["expert_width"], seed=expert_seeds[k], name=f"expert {g}",
                                      device=device, eval_dtype=eval_dtype).fit(train[k], **fit_kwargs)
                   for k, g in enumerate(genres)]
        timings["experts"] = time.perf_counter() - t0
        n_expert = experts[0].n_parameters
        gate_size = gate_parameters(make_gate(p, T, config["gate_width"], 0))
        width = matched_width(p * n_expert + gate_size, T)

        # The cache (modular.cache.build_cache, what `python -m modular cache` runs): every expert's
        # per-token log-probabilities on held-out windows and on M samples of each expert, per split.
        t0 = time.perf_counter()
        records = [{"name": g, "vocab_size": V, "tokenizer": "bytes", "sha256": state_sha256(e),
                    "parameters": e.n_parameters} for g, e in zip(genres, experts)]
        cache = build_cache([as_expert(e, name=g) for g, e in zip(genres, experts)], held_out, Latin1Bytes(),
                            window=T, out=work / "cache", split=config["cache_split"],
                            expert_samples=config["m_expert"], seed=int(seeds[3]), expert_records=records,
                            progress=False)
        timings["cache"] = time.perf_counter() - t0
        data_path, val_path, test_path = (work / "cache" / f for f in ("DATA.npz", "VAL.npz", "TEST.npz"))

        # One monolithic step sees a batch of every domain: the same tokens per step as all experts' steps.
        t0 = time.perf_counter()
        mono = {MONO_EVEN: train_on_weights(train, np.full(p, 1.0 / p), V=V, T=T, width=width, seed=int(seeds[2]),
                                            **fit_kwargs)}
        # DoReMi's proxy is the size of one expert (DoReMi finds the weights with a small proxy).
        mono[MONO_DOREMI], doremi_lam = train_doremi(train, experts, V=V, T=T, width=width, seed=int(seeds[2]),
                                                     proxy_width=config["expert_width"], **fit_kwargs)
        timings["monolithic"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        lengths = sorted(set(config["T_sweep"]) | {T})
        fits, d_paths = {}, {}
        for Tw in lengths:
            d_paths[Tw] = data_path if Tw == T else prefix_split(data_path, work / f"DATA_T{Tw}.npz", Tw)
            v_path = val_path if Tw == T else prefix_split(val_path, work / f"VAL_T{Tw}.npz", Tw)
            fits[Tw] = fit_gate(d_paths[Tw], config, Tw, int(seeds[4]), device, val_path=v_path)
        gate_path, fit = fits[T]
        timings["gate fit"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        mono[MONO_LAMSTAR] = train_on_weights(train, fit.lam, V=V, T=T, width=width, seed=int(seeds[2]), **fit_kwargs)
        timings["monolithic"] += time.perf_counter() - t0

        # The routed model: `python -m modular distill` (rejection from the cached expert samples).
        t0 = time.perf_counter()
        router_path = work / "router.pt"
        _, out = _run_cli(["distill", str(gate_path), str(data_path), "--save", str(router_path), "--steps",
                           str(config["router_steps"]), "--seed", str(int(seeds[5]) % 2**31), "--json"]
                          + ([] if device is None else ["--device", str(device)]))
        distill = json.loads(out)
        router = load_gate(router_path).gate.double()
        timings["router"] = time.perf_counter() - t0
        for model in mono.values():
            model.eval_dtype = eval_dtype

        # Scoring: `python -m modular evaluate` (gate, experts alone, uniform, best static, posterior gate)
        # at every window length; the monolithic and routed models through the same modular.evaluate.score.
        t0 = time.perf_counter()
        mixtures = test_mixtures(p)
        feats, tok_lp = _load_split(test_path, p)
        mono_tok = {label: [m.token_log_probs(x) for x in feats] for label, m in mono.items()}
        rp = [router_probs(router, x) for x in feats]
        per_T = {}
        for Tw in lengths:
            t_path = test_path if Tw == T else prefix_split(test_path, work / f"TEST_T{Tw}.npz", Tw)
            report = work / f"evaluation_T{Tw}"
            # The best static gate is fitted on the gate's own training windows, not on the test windows.
            _run_cli(["evaluate", str(fits[Tw][0]), str(t_path), "--report", str(report),
                      "--static-from", str(d_paths[Tw]),
                      "--mixtures", ";".join(",".join(repr(float(v)) for v in lam) for lam in mixtures)])
            evaluation = json.loads((report / "evaluation.json").read_text())
            domains, _ = load_npz(t_path)
            extra = [Method(label, [tl[:, :Tw].sum(axis=1) for tl in tls]) for label, tls in mono_tok.items()]
            extra.append(Method(ROUTED, [routed_log_prob(r[:, :Tw], lp[:, :Tw]) for r, lp in zip(rp, tok_lp)]))
            evaluation["methods"] += score(extra, domains, list(mixtures), Tw)
            per_T[Tw] = evaluation
        timings["test scoring"] = time.perf_counter() - t0

    evaluation = per_T[T]
    per_domain = _nll_rows(evaluation)
    z_test = {EVALUATE_NAMES.get(r["method"], r["method"]): (r["z"], r["z_se"]) for r in evaluation["methods"]}
    rows = [{"model": label, "mixture": lam_label(lam), "seed": seed, "subsample": config["subsample"],
             "nll_per_byte": float(lam @ np.asarray(nll))} for lam in mixtures for label, nll in per_domain.items()]
    sweep = [{"model": label, "domain": genres[k], "T": Tw, "seed": seed, "subsample": config["subsample"],
              "nll_per_byte": v} for Tw, ev in per_T.items() for label, nll in _nll_rows(ev).items()
             for k, v in enumerate(nll)]
    params = {f"expert {g}": {"frozen": e.n_parameters, "trainable": 0} for g, e in zip(genres, experts)}
    params[GATE] = {"frozen": p * n_expert, "trainable": gate_size}
    params[ROUTED] = {"frozen": p * n_expert, "trainable": gate_parameters(router)}
    for label, model in mono.items():
        params[label] = {"frozen": 0, "trainable": model.n_parameters}
    timings["total"] = time.perf_counter() - t_start
    manifest = cache.manifest
    return {"rows": rows, "sweep": sweep, "per_domain": per_domain, "lam": fit.lam.tolist(), "z": fit.z,
            "fit_status": fit.status, "fit_gap": fit.gap, "fit_steps": fit.steps, "z_estimator": fit.z_estimator,
            "fits": {str(Tw): {"lam": f.lam.tolist(), "z": f.z, "gap": f.gap, "tol_gap": f.tol_gap, "status": f.status,
                               "steps": f.steps, "z_target": f.z_target, "z_holdout": f.z_holdout,
                               "z_holdout_se": f.z_holdout_se, "tol_z": f.tol_z,
                               "selected_step": f.info.get("selected_step"),
                               "validation_value": f.info.get("validation_value")}
                     for Tw, (_, f) in fits.items()},
            "z_test": z_test[GATE][0], "z_test_se": z_test[GATE][1],
            "z_posterior": z_test[POSTERIOR_RAW][0], "z_posterior_se": z_test[POSTERIOR_RAW][1],
            "doremi_lam": np.asarray(doremi_lam).tolist(), "best_static": evaluation["best_static"]["w"],
            "distill": distill, "acceptance": distill["acceptance"], "monolithic_width": width, "parameters": params,
            "cache_counts": manifest["counts"], "cache_files": manifest["files"], "timings": timings,
            "precision": resolve_precision(config.get("precision", "float32"), experts[0].device),
            "checksums": {f"text/{g}/{s}": corpus[g][s].checksum for g in genres for s in ("train", "val", "test")}}
