"""Structural distillation of a gate into a causal router (the paper's Algorithm 5).

A causal router ``gamma(x_<t, .)`` (a distribution over the p experts for each prefix)
defines the routed model

    rho_gamma(x) = prod_t sum_k gamma(x_<t, k) pi_k(x_t | x_<t),

which, unlike the gated model ``pi_g(x) = sum_k g(x,k) pi_k(x)``, can be sampled token by
token. :func:`train_router` fits ``gamma_phi`` (a :class:`~modular.gates.CausalSequenceGate`
read through ``prefix_logits``) to sequences sampled from ``pi_g``, from their cached
per-token expert log-probabilities ``log P_t[k] = log pi_k(x_t | x_<t)``, by minimising
``E_{x ~ pi_g}[-sum_t log(gamma(x_<t) . P_t)]``, i.e. ``KL(pi_g || rho_gamma)`` up to a
constant.

On an enumerable space (all sequences given, with their per-token expert log-probs and
the gate) the exact references are:

- :func:`bayes_router`: the posterior over experts given the prefix under the joint
  ``g(x,k) pi_k(x)`` marginalised over continuations,
  ``gamma_B(k | h) = sum_{x: x_<t = h} g(x,k) pi_k(x) / sum_{x: x_<t = h} pi_g(x)``;
- :func:`optimal_router`: for each prefix h, the minimiser over the simplex of the
  conditional cross-entropy ``-sum_v pi_g(v | h) log sum_k gamma_k pi_k(v | h)``, which
  minimises ``KL(pi_g || rho_gamma)`` exactly (chain rule), computed by EM;
- :func:`kl_to_routed`: ``KL(pi_g / Z || rho_gamma)``;
- :func:`router_divergence`: ``sum_t E_{pi_g}[KL(gamma_B(x_<t) || gamma(x_<t))]``, the other
  side of the paper's distillation identity (Thm 18).

Arrays in, no domain code: sequences are (S x T) integer arrays, per-token log-probs
(S x T x p).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.special import logsumexp
from tqdm.auto import tqdm

from modular.device import resolve_device
from modular.gates import CausalSequenceGate
from theory.errors import InvalidOptionError, ShapeMismatchError


@dataclass
class RouterFit:
    """A trained router and its training trace (``loss``: minibatch NLL per token)."""

    router: CausalSequenceGate
    steps: int
    seconds: float
    device: str
    seed: int
    history: dict[str, np.ndarray] = field(default_factory=dict)


def _check_sequences(tokens, token_logp) -> tuple[np.ndarray, np.ndarray]:
    tok = np.asarray(tokens)
    lp = np.asarray(token_logp, dtype=np.float64)
    if tok.ndim != 2 or lp.ndim != 3 or lp.shape[:2] != tok.shape:
        raise ShapeMismatchError(
            f"tokens must be (S x T) and per-token log-probs (S x T x p); got {tok.shape} and {lp.shape}"
        )
    if np.isnan(lp).any() or (lp == np.inf).any():
        s, t, k = np.argwhere(np.isnan(lp) | (lp == np.inf))[0]
        raise InvalidOptionError(f"per-token log-prob of sequence {s}, position {t}, expert {k} is NaN or +inf")
    return tok.astype(np.int64), lp


def routed_log_prob(router_probs, token_logp) -> np.ndarray:
    """``log rho_gamma(x) = sum_t log sum_k gamma(x_<t, k) pi_k(x_t | x_<t)`` per sequence.

    ``router_probs`` and ``token_logp`` are (S x T x p); the result is (S,).
    """
    with np.errstate(divide="ignore"):
        log_gamma = np.log(np.asarray(router_probs, dtype=np.float64))
    return logsumexp(log_gamma + np.asarray(token_logp, dtype=np.float64), axis=2).sum(axis=1)


def kl_to_routed(log_gated, log_routed) -> float:
    """``KL(pi_g / Z || rho)`` over an enumerated space, from (S,) log-probabilities.

    ``pi_g`` is renormalised by its mass Z (one for a gate in G1); ``rho`` is a routed
    model, normalised by construction.
    """
    lg = np.asarray(log_gated, dtype=np.float64)
    lg = lg - logsumexp(lg)
    w = np.exp(lg)
    mask = w > 0
    return float(np.sum(w[mask] * (lg[mask] - np.asarray(log_routed, dtype=np.float64)[mask])))


def router_divergence(log_gated, reference, router) -> float:
    """``sum_t E_{x ~ pi_g / Z}[KL(reference(x_<t, .) || router(x_<t, .))]`` on an enumerated space.

    The right-hand side of the paper's distillation identity (Thm 18), with
    ``reference`` the Bayes router; ``log_gated`` (S,), routers (S x T x p).
    """
    lg = np.asarray(log_gated, dtype=np.float64)
    w = np.exp(lg - logsumexp(lg))
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(router, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(a > 0, a * (np.log(a) - np.log(b)), 0.0).sum(axis=2)
    return float(np.einsum("s,st->", w, terms))


def _prefix_groups(tok: np.ndarray) -> list[np.ndarray]:
    """For t = 0..T: group id of each sequence's prefix ``x_<t`` (length t)."""
    S, T = tok.shape
    groups = [np.zeros(S, dtype=np.int64)]
    for t in range(1, T + 1):
        _, inv = np.unique(tok[:, :t], axis=0, return_inverse=True)
        groups.append(inv.reshape(-1))
    return groups


def _group_sum(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    out = np.zeros((group.max() + 1,) + values.shape[1:])
    np.add.at(out, group, values)
    return out


def bayes_router(tokens, token_logp, log_gate) -> np.ndarray:
    """The posterior over experts given the prefix, evaluated along every sequence.

    Solves ``gamma_B(k | x_<t) = P(k | x_<t)`` under the joint ``P(x, k) = g(x,k) pi_k(x)``
    (with ``log pi_k(x) = sum_t token_logp[x, t, k]``) on an enumerated space.

    Parameters
    ----------
    tokens : (S x T) int array
        All sequences of the space (each once).
    token_logp : (S x T x p) array
        ``log pi_k(x_t | x_<t)``.
    log_gate : (S x p) array
        ``log g(x, k)``.

    Returns
    -------
    (S x T x p) array: ``gamma_B(k | x_<t)`` for each sequence x and position t.
    """
    tok, lp = _check_sequences(tokens, token_logp)
    lg = np.asarray(log_gate, dtype=np.float64)
    if lg.shape != (tok.shape[0], lp.shape[2]):
        raise ShapeMismatchError(f"log_gate must be (S x p) = {(tok.shape[0], lp.shape[2])}, got {lg.shape}")
    log_joint = lg + lp.sum(axis=1)
    joint = np.exp(log_joint - log_joint.max())
    groups = _prefix_groups(tok)
    out = np.empty(lp.shape)
    for t in range(tok.shape[1]):
        mass = _group_sum(joint, groups[t])[groups[t]]
        out[:, t] = mass / mass.sum(axis=1, keepdims=True)
    return out


def optimal_router(tokens, token_logp, log_gate, *, max_iter: int = 2000, tol: float = 1e-12) -> np.ndarray:
    """The causal router minimising ``KL(pi_g || rho_gamma)`` exactly, per prefix, by EM.

    For each prefix h (of length t) solves
    ``max_{gamma in simplex} sum_v pi_g(h, v) log sum_k gamma_k pi_k(v | h)`` (a concave
    maximum-likelihood problem for mixture weights) by the EM fixed point
    ``gamma_k <- gamma_k sum_v pi_g(v | h) pi_k(v | h) / sum_j gamma_j pi_j(v | h)``,
    vectorised over prefixes, started at the Bayes router. Prefixes with zero mass keep
    the Bayes router. Same inputs and output layout as :func:`bayes_router`.
    """
    tok, lp = _check_sequences(tokens, token_logp)
    lg = np.asarray(log_gate, dtype=np.float64)
    log_pg = logsumexp(lg + lp.sum(axis=1), axis=1)
    pg = np.exp(log_pg - log_pg.max())
    groups = _prefix_groups(tok)
    start = bayes_router(tok, lp, lg)
    out = np.empty(lp.shape)
    for t in range(tok.shape[1]):
        parent, child = groups[t], groups[t + 1]
        # One row per (prefix, next token): its mass, its parent prefix, the experts' P(v | h).
        first = np.unique(child, return_index=True)[1]
        child_mass = _group_sum(pg, child)
        child_parent = parent[first]
        child_p = np.exp(lp[first, t])
        parent_mass = _group_sum(child_mass, child_parent)
        cond = child_mass / np.where(parent_mass > 0, parent_mass, 1.0)[child_parent]
        gamma = start[np.unique(parent, return_index=True)[1], t]
        for _ in range(max_iter):
            mix = np.einsum("ck,ck->c", gamma[child_parent], child_p)
            ratio = cond / np.where(mix > 0, mix, 1.0)
            new = gamma * _group_sum(ratio[:, None] * child_p, child_parent)
            new = np.where(parent_mass[:, None] > 0, new / new.sum(axis=1, keepdims=True).clip(1e-300), gamma)
            done = np.abs(new - gamma).max() < tol
            gamma = new
            if done:
                break
        out[:, t] = gamma[parent]
    return out


def router_probs(router: CausalSequenceGate, tokens, *, chunk: int = 8192) -> np.ndarray:
    """``gamma_phi(x_<t, k)`` of a trained router for each sequence and position, (S x T x p)."""
    tok = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
    dev = next(router.parameters()).device
    out = []
    with torch.no_grad():
        for a in range(0, len(tok), chunk):
            out.append(torch.softmax(router.prefix_logits(tok[a:a + chunk].to(dev)), dim=2).double().cpu())
    return torch.cat(out).numpy()


def train_router(tokens, token_logp, *, vocab: int, router: CausalSequenceGate | None = None, steps: int = 1000,
                 batch_size: int = 256, lr: float = 0.01, weight_decay: float = 0.0, seed: int = 0, device=None,
                 dtype: torch.dtype = torch.float64, log_every: int = 10, progress: bool = False) -> RouterFit:
    """Fit a causal router to sequences sampled from ``pi_g`` (Algorithm 5).

    Minimises the empirical ``-(1/N) sum_n sum_t log sum_k gamma_phi(x_<t, k) P_t[k]``
    with ``P_t[k] = pi_k(x_t | x_<t)`` (given as ``token_logp``, log space) by AdamW on
    minibatches drawn with a seeded CPU generator.

    Parameters
    ----------
    tokens : (N x T) int array
        Sequences sampled from the gated model.
    token_logp : (N x T x p) array
        ``log pi_k(x_t | x_<t)`` along each sequence.
    vocab : int
        Number of token ids.
    router : CausalSequenceGate, optional
        Default: a fresh one initialised under ``seed``.
    """
    tok, lp = _check_sequences(tokens, token_logp)
    if steps < 1 or batch_size < 1:
        raise InvalidOptionError(f"steps ({steps}) and batch_size ({batch_size}) must be positive")
    dev = resolve_device(device)
    p = lp.shape[2]
    if router is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            router = CausalSequenceGate(vocab, p)
    router.to(device=dev, dtype=dtype)
    tok_t = torch.as_tensor(tok, device=dev)
    lp_t = torch.as_tensor(lp, device=dev, dtype=dtype)
    opt = torch.optim.AdamW(router.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    history: dict[str, list] = {"step": [], "loss": []}
    t0 = time.perf_counter()
    for step in tqdm(range(steps), disable=not progress, desc="router"):
        idx = torch.randint(len(tok), (min(batch_size, len(tok)),), generator=generator).to(dev)
        log_gamma = torch.log_softmax(router.prefix_logits(tok_t[idx]), dim=2)
        loss = -torch.logsumexp(log_gamma + lp_t[idx], dim=2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            history["step"].append(step + 1)
            history["loss"].append(float(loss.detach()))
    return RouterFit(router=router, steps=steps, seconds=time.perf_counter() - t0, device=str(dev), seed=seed,
                     history={k: np.asarray(v) for k, v in history.items()})


def distill_cached(loaded, data_path, *, steps: int = 1000, batch_size: int = 256, lr: float = 0.01,
                   seed: int = 0, device=None, progress: bool = False) -> tuple[RouterFit, dict]:
    """Algorithm 5 on a cache: router trained on the cached expert samples accepted by rejection.

    The expert samples of ``data_path`` (M from each expert, i.e. draws of
    ``q0 = (1/p) sum_k pi_k`` in equal shares) are kept with probability
    ``pi_g(x) / sum_k pi_k(x)`` (:func:`modular.sampling.accept`), which leaves exact
    samples of ``pi_g / Z`` (about ``M Z`` of them); the router is fitted to their cached
    per-token expert log-probabilities (``expert_token_logp_k``) by :func:`train_router`.

    A fifth of the accepted samples is held out. Returns the fit and a summary:
    candidates, accepted, acceptance rate, Z, and the held-out estimate
    ``mean(log pi_g(x) - log Z - log rho(x))`` of ``KL(pi_g / Z || rho)`` (nats per
    sequence; Z from all cached expert samples) with its standard error.
    """
    from modular.cache import describe_data
    from modular.data import sample_set
    from modular.evaluate import check_gate_matches, gate_log_probs, z_with_se
    from modular.sampling import accept
    from theory.errors import InputError

    info = describe_data(data_path)
    check_gate_matches(loaded.meta, info)
    with np.load(data_path, allow_pickle=False) as f:
        p = info["p"]
        keys = [f"expert_token_logp_{k}" for k in range(p)] + [f"expert_feat_{k}" for k in range(p)]
        missing = [k for k in keys if k not in f.files]
        if missing:
            raise InputError(f"{data_path} has no {missing[0]}: distillation needs the cached expert samples "
                             f"with per-token log-probabilities (python -m modular cache)")
        tokens = [f[f"expert_feat_{k}"] for k in range(p)]
        token_lp = [f[f"expert_token_logp_{k}"] for k in range(p)]
    sets = [sample_set(t.sum(axis=1), tok, name=f"expert samples {k}") for k, (tok, t) in
            enumerate(zip(tokens, token_lp))]
    log_gates = [gate_log_probs(loaded, s) for s in sets]
    z, z_se = z_with_se(log_gates)
    generator = torch.Generator().manual_seed(seed)
    all_tok = np.concatenate(tokens)
    all_lp = np.concatenate(token_lp)
    all_lg = torch.cat(log_gates)
    all_seq = torch.cat([s.logp for s in sets])
    keep = accept(all_seq, all_lg, generator=generator).numpy()
    if keep.sum() < 2:
        raise InputError(f"rejection sampling kept {int(keep.sum())} of {len(keep)} cached expert samples: "
                         f"cache more with --expert-samples")
    vocab = info["vocab_size"] or int(all_tok.max()) + 1
    # A fifth of the accepted samples is held out to estimate KL(pi_g / Z || rho) honestly.
    idx = np.flatnonzero(keep)[torch.randperm(int(keep.sum()), generator=generator).numpy()]
    n_out = max(1, len(idx) // 5)
    held, train = idx[:n_out], idx[n_out:]
    fit = train_router(all_tok[train], all_lp[train], vocab=vocab, steps=steps, batch_size=batch_size, lr=lr,
                       seed=seed, device=device, progress=progress)
    fit.router.cpu()
    log_pg = torch.logsumexp(all_lg[held] + all_seq[held], dim=1).numpy()
    log_rho = routed_log_prob(router_probs(fit.router, all_tok[held]), all_lp[held])
    kl_terms = log_pg - np.log(z) - log_rho
    summary = {"candidates": int(len(keep)), "accepted": int(keep.sum()), "acceptance": float(keep.mean()),
               "trained_on": int(len(train)), "held_out": int(n_out), "z": z, "z_se": z_se,
               "kl_held_out": float(kl_terms.mean()),
               "kl_held_out_se": float(kl_terms.std(ddof=1) / np.sqrt(n_out)) if n_out > 1 else float("nan"),
               "final_loss": float(fit.history["loss"][-1]), "steps": steps, "seconds": fit.seconds,
               "device": fit.device, "vocab_size": vocab}
    return fit, summary
