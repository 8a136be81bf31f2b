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
the gate) the exact references live in :mod:`theory.routing` (numpy) and are re-exported
here: :func:`bayes_router` (the posterior over experts given the prefix),
:func:`optimal_router` (the router minimising ``KL(pi_g || rho_gamma)``, certified),
:func:`routed_log_prob`, :func:`router_divergence` (the right-hand side of the paper's
distillation identity, Thm 18) and :func:`router_tv`; :func:`kl_to_routed` is
``KL(pi_g / Z || rho_gamma)``.

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
from modular.gates import CausalSequenceGate, mixture_log_prob
from theory.divergences import kl_log
from theory.errors import InvalidOptionError
from theory.routing import bayes_router, optimal_router, routed_log_prob, router_divergence, router_tv
from theory.routing import check_sequences as _check_sequences

__all__ = ["RouterFit", "bayes_router", "distill_cached", "kl_to_routed", "optimal_router", "routed_log_prob",
           "router_divergence", "router_probs", "router_tv", "train_router"]


@dataclass
class RouterFit:
    """A trained router and its training trace (``loss``: minibatch NLL per token)."""

    router: CausalSequenceGate
    steps: int
    seconds: float
    device: str
    seed: int
    history: dict[str, np.ndarray] = field(default_factory=dict)


def kl_to_routed(log_gated, log_routed) -> float:
    """``KL(pi_g / Z || rho)`` over an enumerated space, from (S,) log-probabilities.

    ``pi_g`` is renormalised by its mass Z (one for a gate in G1); ``rho`` is a routed
    model, normalised by construction.
    """
    lg = np.asarray(log_gated, dtype=np.float64)
    return kl_log(lg - logsumexp(lg), log_routed)


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
    log_pg = mixture_log_prob(all_lg[held], all_seq[held]).numpy()
    log_rho = routed_log_prob(router_probs(fit.router, all_tok[held]), all_lp[held])
    kl_terms = log_pg - np.log(z) - log_rho
    summary = {"candidates": int(len(keep)), "accepted": int(keep.sum()), "acceptance": float(keep.mean()),
               "trained_on": int(len(train)), "held_out": int(n_out), "z": z, "z_se": z_se,
               "kl_held_out": float(kl_terms.mean()),
               "kl_held_out_se": float(kl_terms.std(ddof=1) / np.sqrt(n_out)) if n_out > 1 else float("nan"),
               "final_loss": float(fit.history["loss"][-1]), "steps": steps, "seconds": fit.seconds,
               "device": fit.device, "vocab_size": vocab}
    return fit, summary
