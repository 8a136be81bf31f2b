"""Real text: NLL per byte of each expert, monolithic models and the robust gate on held-out mixtures.

Domains are the byte-level text genres that ship with CPython (:mod:`synthetic.text`:
reference-documentation prose, standard-library source, project notes). For each seed
a random subset of each domain's training documents (at most ``max_train_bytes``)
trains one Kneser-Ney byte n-gram expert per domain and two monolithic n-grams on the
pooled subsets at even domain weights (the experts' order, and one order larger).

The robust gate is a linear gate on the vector of the experts' log-probabilities of a
length-``T`` window, fitted by :func:`modular.fit_robust_gate` on validation windows of
each domain and on windows sampled from each expert (unbiased Z). Real text has no
known entropy, so the adversary sees the excess loss over the domain's own expert
(``adversary="excess"``, i.e. ``KL(D_k || pi_g) - KL(D_k || pi_k)``). Every model is
scored on the test windows of each domain; the NLL of a test mixture ``lam`` is
``sum_k lam_k NLL_k``. The gate's own objective, the excess over each domain's expert, is
also reported on the validation windows it was fitted on (``val_excess``): with only
about ten documents in a split, the validation and test windows of a domain can differ
more than the gates do.
"""

from __future__ import annotations

import numpy as np
import torch

from modular import LinearGate, fit_robust_gate, gated_log_prob, sample_set
from synthetic.experiments.common import lam_label, seed_streams, single_thread_torch
from synthetic.experiments.labels import ROBUST, UNIFORM_STATIC, expert, monolithic_ngram
from synthetic.ngram import NGramModel
from synthetic.sequences import sample_categorical
from synthetic.text import load_text_corpus

#: Byte-level text: every one of the 256 byte values is a token.
V = 256


def sample_windows(model, m: int, T: int, seed: int) -> np.ndarray:
    """``m`` length-``T`` sequences drawn token by token from ``model`` (m x T int64)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((m, 0), dtype=np.int64)
    for _ in range(T):
        out = np.column_stack([out, sample_categorical(model.next_token_probs(out), rng)])
    return out


def _subset(split, max_bytes: int, fraction: float, rng):
    """A random ``fraction`` of the documents, in random order, up to ``max_bytes`` bytes."""
    order = rng.permutation(len(split.docs))[: max(1, int(round(fraction * len(split.docs))))]
    docs = [split.docs[i] for i in order]
    sizes = np.cumsum([d.size for d in docs])
    return docs[: max(1, int(np.searchsorted(sizes, max_bytes, side="right")))]


def _windows(split, m: int, T: int, rng) -> np.ndarray:
    w = split.windows(T)
    return w[np.sort(rng.choice(len(w), size=min(m, len(w)), replace=False))]


def _uniform_gate(logp_windows: np.ndarray) -> np.ndarray:
    """``log((1/p) sum_k pi_k(x))`` of each window: the uniform static gate (equal gate logits)."""
    lp = torch.as_tensor(logp_windows, dtype=torch.float64)
    return gated_log_prob(torch.zeros_like(lp), lp).numpy()


def _nll_per_byte(logp_windows: np.ndarray, T: int) -> float:
    return float(-logp_windows.mean() / T)


def text_nll(config: dict) -> dict:
    """NLL per byte of every model on each domain's test windows and on test mixtures.

    config: ``domains``, ``order``, ``T``, ``max_train_bytes``, ``train_fraction``,
    ``m_val``, ``m_test``, ``m_expert`` (windows sampled per expert), ``steps``,
    ``batch_size``, ``lr``, ``lr_schedule``, ``lam_lr``, ``mixtures`` (list of test mixtures), ``seed``.
    """
    seed, T, order = config["seed"], config["T"], config["order"]
    corpus = load_text_corpus(config["domains"])
    names = list(config["domains"])
    (split_seed,), expert_seeds = seed_streams(seed, 1, len(names))
    rng = np.random.default_rng(split_seed)
    train = [_subset(corpus[d]["train"], config["max_train_bytes"], config["train_fraction"], rng) for d in names]
    experts = [NGramModel(V, order, name=f"expert {d}").fit(docs) for d, docs in zip(names, train)]
    sizes = np.array([sum(doc.size for doc in docs) for docs in train], dtype=np.float64)
    pooled = [doc for docs in train for doc in docs]
    weights = np.concatenate([np.full(len(docs), sizes.sum() / (len(names) * s)) for docs, s in zip(train, sizes)])
    monolithic = {monolithic_ngram(n): NGramModel(V, n, name=monolithic_ngram(n)).fit(pooled, weights)
                  for n in (order, order + 1)}
    val = [_windows(corpus[d]["val"], config["m_val"], T, rng) for d in names]
    test = [_windows(corpus[d]["test"], config["m_test"], T, rng) for d in names]

    def logp(x):
        return np.column_stack([e.log_prob(x) for e in experts])

    val_logp = [logp(x) for x in val]
    dom_sets = [sample_set(lp, name=f"val {d}") for d, lp in zip(names, val_logp)]
    exp_sets = [sample_set(logp(sample_windows(e, config["m_expert"], T, s)), name=f"expert {k}")
                for k, (e, s) in enumerate(zip(experts, expert_seeds))]
    feats = torch.cat([s.features for s in dom_sets])
    with single_thread_torch():
        torch.manual_seed(seed)
        gate = LinearGate(len(names), len(names), mean=feats.mean(0), std=feats.std(0))
        fit = fit_robust_gate(gate, dom_sets, exp_sets, adversary="excess", steps=config["steps"],
                              batch_size=config["batch_size"], lr=config["lr"], lr_schedule=config["lr_schedule"],
                              lam_lr=config["lam_lr"], seed=seed)
        gate.eval()
        with torch.no_grad():
            test_logp = [logp(x) for x in test]
            robust = [gated_log_prob(gate(torch.as_tensor(lp)), torch.as_tensor(lp)).numpy() for lp in test_logp]
    uniform = [_uniform_gate(lp) for lp in test_logp]
    own_val = np.array([-lp[:, k].mean() for k, lp in enumerate(val_logp)])
    uniform_val = np.array([-_uniform_gate(lp).mean() for lp in val_logp])
    val_excess = {ROBUST: ((fit.nll - own_val) / T).tolist(), UNIFORM_STATIC: ((uniform_val - own_val) / T).tolist()}
    per_domain = {ROBUST: [_nll_per_byte(r, T) for r in robust],
                  UNIFORM_STATIC: [_nll_per_byte(u, T) for u in uniform]}
    for k, d in enumerate(names):
        per_domain[expert(d)] = [_nll_per_byte(lp[:, k], T) for lp in test_logp]
    for label, model in monolithic.items():
        per_domain[label] = [_nll_per_byte(model.log_prob(x), T) for x in test]
    rows = []
    for lam in np.asarray(config["mixtures"], dtype=np.float64):
        for label, nll in per_domain.items():
            rows.append({"model": label, "mixture": lam_label(lam), "seed": seed, "nll_per_byte": float(lam @ nll)})
    checks = {f"text/{d}/{s}": corpus[d][s].checksum for d in names for s in ("train", "val", "test")}
    return {"rows": rows, "lam": fit.lam.tolist(), "z": fit.z, "z_estimator": fit.z_estimator, "val_excess": val_excess,
            "train_bytes": sizes.tolist(), "checksums": checks}
