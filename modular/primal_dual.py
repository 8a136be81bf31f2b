"""Stochastic primal-dual fit of a robust gate from cached expert log-probabilities.

The problem (DESIGN.md 2.3): over gates ``g_theta = softmax(f_theta)`` and mixtures
``lam`` in Lambda (the simplex, optionally with per-domain bounds ``lo <= lam <= hi``),

    min_theta max_lam  sum_k lam_k NLL_k(theta)   subject to   Z(theta) = 1,

with ``NLL_k(theta) = E_{x ~ D_k}[-log pi_g(x)]`` and ``Z(theta) = sum_x sum_k g(x,k)
pi_k(x)``, played through the Lagrangian ``L = sum_k lam_k NLL_k + mu (Z - 1)``:

- theta: AdamW steps on minibatch estimates of ``L`` plus the augmented-Lagrangian
  term ``penalty * (Zbar - 1) * Z`` (``Zbar`` the smoothed Z, held fixed in the
  gradient), i.e. the multiplier seen by theta is ``mu + penalty (Zbar - 1)``;
- mu: dual ascent ``mu <- mu + mu_lr (Zbar - 1)`` (an equality constraint: mu is free);
- Z: a minibatch estimate (:mod:`modular.z_estimators`) smoothed by an exponential
  moving average ``Zbar <- z_decay Zbar + (1 - z_decay) Zhat``;
- lam: exponentiated gradient ``lam <- Proj(lam * exp(lam_lr * a))`` on the per-domain
  losses ``a_k`` the adversary sees (``adversary``):

  * ``"nll"``: ``a_k = NLL_k`` (Group DRO). Since ``NLL_k = H(D_k) + KL(D_k || pi_g)``,
    this adversary favours high-entropy domains: it is not the paper's game.
  * ``"excess"``: ``a_k = NLL_k - E_{D_k}[-log pi_k]`` (DoReMi-style excess over the
    domain's own expert), i.e. ``KL(D_k || pi_g) - KL(D_k || pi_k)``.
  * ``"kl"``: ``a_k = NLL_k - H_k`` with given entropies ``H_k``: ``KL(D_k || pi_g)``,
    the paper's KL game, whose solution is theory's ``lam*``.

  ``Proj`` is the KL (Bregman) projection onto ``{lam in simplex: lo <= lam <= hi}``:
  ``lam_k = clip(c v_k, lo_k, hi_k)`` with the scalar ``c > 0`` that makes the sum one
  (found by bisection on ``log c``); without bounds it is the plain normalisation.

The returned ``lam`` is the last iterate or the average of the iterates from step
``average_from`` on (``lam_iterate``).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from modular.data import SampleSet, check_sets
from modular.device import resolve_device
from modular.z_estimators import UNBIASED, check_estimator, combine, z_terms
from theory.errors import InputError, InvalidOptionError, ShapeMismatchError
from theory.prior import PriorSet

ADVERSARIES = ("nll", "excess", "kl")
LAM_ITERATES = ("last", "average")
LR_SCHEDULES = ("constant", "cosine")


@dataclass
class RobustGateResult:
    """Outcome of :func:`fit_robust_gate`.

    Attributes
    ----------
    lam : ndarray (p,)
        The least-favourable mixture estimate (last or averaged iterate, ``lam_iterate``).
    lam_last : ndarray (p,)
        The last iterate.
    gate : torch.nn.Module
        The trained gate (on ``device``); ``gate_state`` is a CPU copy of its state dict.
    nll : ndarray (p,)
        ``E_{x ~ D_k}[-log pi_g(x)]`` over all samples of each domain (weighted).
    kl : ndarray (p,) or None
        ``nll - entropies`` when entropies were given.
    value : float or None
        ``max_k kl_k``: the robust KL of the fitted gate (when entropies were given).
    z : float
        Z of the trained gate over all samples of the estimator's sets.
    z_ema : float
        The smoothed minibatch Z at the last step.
    z_estimator : str
    z_unbiased : bool
        Whether ``z_estimator`` is unbiased (False for the data shortcut).
    z_check : float or None
        The unbiased ``"expert-samples"`` Z when expert samples were given (None otherwise).
    mu : float
        Final multiplier of the constraint ``Z = 1``.
    adversary : str
    steps, seconds, device, seed
    history : dict of ndarrays
        Every ``log_every`` steps: ``step``, ``seconds`` (wall time of the loop so far),
        ``lam`` (T x p), ``mu``, ``z`` (minibatch),
        ``z_ema``, ``loss`` (the minibatch Lagrangian), ``nll`` (T x p), ``adversary_loss``
        (T x p).
    """

    lam: np.ndarray
    lam_last: np.ndarray
    gate: nn.Module
    gate_state: dict
    nll: np.ndarray
    kl: np.ndarray | None
    value: float | None
    z: float
    z_ema: float
    z_estimator: str
    z_unbiased: bool
    z_check: float | None
    mu: float
    adversary: str
    steps: int
    seconds: float
    device: str
    seed: int
    history: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (no history, no gate parameters)."""
        out = {
            "lam": self.lam.tolist(),
            "lam_last": self.lam_last.tolist(),
            "nll": self.nll.tolist(),
            "kl": None if self.kl is None else self.kl.tolist(),
            "value": self.value,
            "z": self.z,
            "z_ema": self.z_ema,
            "z_estimator": self.z_estimator,
            "z_unbiased": self.z_unbiased,
            "z_check": self.z_check,
            "mu": self.mu,
            "adversary": self.adversary,
            "steps": self.steps,
            "seconds": self.seconds,
            "device": self.device,
            "seed": self.seed,
        }
        out.update(self.info)
        return out


def kl_project_capped_simplex(v: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, iters: int = 64) -> torch.Tensor:
    """KL projection of a positive vector onto ``{lam : sum lam = 1, lo <= lam <= hi}``.

    Solves ``min_lam KL(lam || v)`` on that set; the solution is ``clip(c v, lo, hi)``
    with ``c > 0`` the root of the monotone ``sum_k clip(c v_k, lo_k, hi_k) = 1``, found
    by bisection on ``log c`` (vectorised, no host synchronisation). The bracket
    ``[log(1/min v) - 200, log(1/min v)]`` starts with every entry at its upper bound at
    the right end and at most ``e^-200`` above its lower bound at the left end.

    This is the torch counterpart of :class:`theory.projection.PriorProjector` for box
    bounds; :func:`theory.projection.project_capped_simplex` is the Euclidean projection.
    """
    t_hi = -torch.log(v.min())
    t_lo = t_hi - 200.0
    for _ in range(iters):
        t = 0.5 * (t_lo + t_hi)
        over = torch.clamp(torch.exp(t) * v, lo, hi).sum() > 1
        t_hi = torch.where(over, t, t_hi)
        t_lo = torch.where(over, t_lo, t)
    return torch.clamp(torch.exp(0.5 * (t_lo + t_hi)) * v, lo, hi)


class _Batches:
    """All sample sets pooled on the device, and a minibatch sampler over them.

    Sets are stacked domains first, then (if any) expert-sample sets. A set with at most
    ``batch_size`` samples (or every set when ``batch_size`` is None) enters each batch
    whole with its normalised weights (exact expectations); a larger one contributes
    ``batch_size`` indices drawn with replacement (uniformly, or proportionally to its
    weights), each with weight ``1/batch_size``. Indices come from a CPU
    ``torch.Generator`` so that CPU and CUDA runs see the same minibatches.
    """

    def __init__(self, sets: list[SampleSet], batch_size: int | None, device, dtype):
        self.sizes = [s.m for s in sets]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).tolist()
        self.logp = torch.cat([s.logp for s in sets]).to(device=device, dtype=dtype)
        feats = torch.cat([s.features for s in sets])
        self.features = (feats.to(dtype) if torch.is_floating_point(feats) else feats).to(device)
        self.plan = []
        weights, set_ids = [], []
        for j, s in enumerate(sets):
            probs = s.probabilities()
            if batch_size is None or s.m <= batch_size:
                self.plan.append(("full", torch.arange(s.m) + self.offsets[j], None))
                weights.append(probs)
                set_ids.append(torch.full((s.m,), j))
            else:
                uniform = s.weight is None
                self.plan.append(("draw", self.offsets[j], None if uniform else probs))
                weights.append(torch.full((batch_size,), 1.0 / batch_size, dtype=torch.float64))
                set_ids.append(torch.full((batch_size,), j))
        self.batch_size = batch_size
        self.weights = torch.cat(weights).to(device=device, dtype=dtype)
        self.set_ids = torch.cat(set_ids).to(device)
        self.n_sets = len(sets)
        self.device = device
        self.all_full = all(kind == "full" for kind, _, _ in self.plan)
        self._full_index = torch.cat([ix for _, ix, _ in self.plan]).to(device) if self.all_full else None

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        if self.all_full:
            return self._full_index
        parts = []
        for (kind, a, probs), m in zip(self.plan, self.sizes):
            if kind == "full":
                parts.append(a)
            elif probs is None:
                parts.append(a + torch.randint(m, (self.batch_size,), generator=generator))
            else:
                parts.append(a + torch.multinomial(probs, self.batch_size, replacement=True, generator=generator))
        return torch.cat(parts).to(self.device)

    def set_means(self, values: torch.Tensor) -> torch.Tensor:
        """Weighted mean of per-row ``values`` within each set, (n_sets,)."""
        out = torch.zeros(self.n_sets, dtype=values.dtype, device=values.device)
        return out.index_add(0, self.set_ids, self.weights * values)


def _check_options(adversary, entropies, lam_iterate, lr_schedule, p, lam_bounds):
    if adversary not in ADVERSARIES:
        raise InvalidOptionError(f"unknown adversary loss {adversary!r}; choose one of {', '.join(ADVERSARIES)}")
    if lr_schedule not in LR_SCHEDULES:
        raise InvalidOptionError(f"unknown lr_schedule {lr_schedule!r}; choose 'constant' or 'cosine'")
    if lam_iterate not in LAM_ITERATES:
        raise InvalidOptionError(f"unknown lam_iterate {lam_iterate!r}; choose 'last' or 'average'")
    ent = None
    if entropies is not None:
        ent = np.asarray(entropies, dtype=np.float64)
        if ent.shape != (p,):
            raise ShapeMismatchError(f"entropies must have one value per domain (p={p}), got shape {ent.shape}")
        if not np.isfinite(ent).all():
            raise InputError(f"entropy of domain {int(np.flatnonzero(~np.isfinite(ent))[0])} is not finite")
    if adversary == "kl" and ent is None:
        raise InvalidOptionError("adversary 'kl' needs the per-domain entropies H(D_k)")
    lo, hi = np.zeros(p), np.ones(p)
    if lam_bounds is not None:
        lo, hi = PriorSet(p, lower=lam_bounds[0], upper=lam_bounds[1]).bounds()
    return ent, lo, hi


def fit_robust_gate(
    gate: nn.Module,
    domains: list[SampleSet],
    expert_samples: list[SampleSet] | None = None,
    *,
    entropies=None,
    adversary: str = "kl",
    z_estimator: str | None = None,
    steps: int = 2000,
    batch_size: int | None = 256,
    lr: float = 0.05,
    lr_schedule: str = "constant",
    weight_decay: float = 0.0,
    lam_lr: float = 0.1,
    mu_lr: float = 0.05,
    penalty: float = 1.0,
    mu0: float = 1.0,
    z_decay: float = 0.9,
    lam_bounds=None,
    lam_iterate: str = "average",
    average_from: int | None = None,
    device=None,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    log_every: int = 10,
    eval_chunk: int = 65536,
    progress: bool = False,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    callback: Callable[[int, dict], None] | None = None,
) -> RobustGateResult:
    """Fit a robust gate by stochastic primal-dual steps (see the module docstring).

    Solves ``min_theta max_{lam in Lambda} sum_k lam_k NLL_k(theta)`` s.t. ``Z(theta) = 1``
    through its Lagrangian, from cached expert log-probabilities on samples of each domain
    (and, for an unbiased Z, on samples of each expert).

    Parameters
    ----------
    gate : torch.nn.Module
        Maps a batch of features to (B x p) logits; trained in place (moved to ``device``
        and ``dtype``).
    domains : list of SampleSet
        ``domains[k]``: samples of ``D_k`` with all p experts' log-probabilities.
    expert_samples : list of SampleSet, optional
        ``expert_samples[k]``: samples of ``pi_k``. Needed by the unbiased Z estimators.
    entropies : array (p,), optional
        ``H(D_k)`` in nats; needed by ``adversary="kl"``; gives ``kl`` in the result.
    adversary : {"nll", "excess", "kl"}
        What the lam-player maximises (module docstring).
    z_estimator : {"expert-samples", "importance", "data-shortcut"}, optional
        Default: ``"expert-samples"`` when expert samples are given, else the (biased,
        warned) ``"data-shortcut"``.
    steps, batch_size
        Number of primal-dual steps; minibatch size per sample set (None: every set whole,
        with its weights: the exact population objective of weighted enumerations).
    lr, lr_schedule, weight_decay
        AdamW on theta; ``lr_schedule="cosine"`` decays the learning rate to zero over
        ``steps`` (cosine annealing), which averages out the gate's minibatch noise: on
        long minibatch runs it brings Z and the value closer to the optimum, but lam
        (whose step ``lam_lr`` is not annealed) then chases the nearly frozen gate and
        its average lands further from ``lam*``, short runs end worse, and full-batch
        runs gain nothing. Hence the default ``"constant"``; pass ``"cosine"`` for long
        minibatch fits whose value and Z matter more than lam.
    lam_lr, mu_lr, penalty, mu0, z_decay
        Exponentiated-gradient step on lam; dual-ascent step on mu; augmented-Lagrangian
        weight; initial mu; EMA factor of Z.
    lam_bounds : (lo, hi), optional
        Per-domain bounds of Lambda (validated by :class:`theory.prior.PriorSet`).
    lam_iterate : {"last", "average"}; average_from : int
        Which lam to return; the average runs over steps ``>= average_from`` (default
        ``steps // 2``).
    device : str or torch.device, optional
        Default CUDA when available, else CPU; results agree to float tolerance.
    dtype, seed
        Arithmetic precision; seed of the minibatch generator.
    log_every, eval_chunk, progress
        History interval; chunk size of the final full-data evaluation; tqdm bar.
    checkpoint, checkpoint_every
        If given, the full state (gate, optimiser, lam, mu, Z EMA, generator, step,
        history) is saved there every ``checkpoint_every`` steps and at the end; an
        existing checkpoint of the same configuration is resumed, and the resumed fit ends
        bit-for-bit where an uninterrupted one would.
    callback : callable(step, record), optional
        Called with every history record (after the step); may raise to stop.

    Returns
    -------
    RobustGateResult
    """
    p = check_sets(domains, "domains")
    if expert_samples is not None:
        check_sets(expert_samples, "expert samples", p)
    if z_estimator is None:
        z_estimator = "expert-samples" if expert_samples is not None else "data-shortcut"
    check_estimator(z_estimator, expert_samples is not None)
    ent, lo_np, hi_np = _check_options(adversary, entropies, lam_iterate, lr_schedule, p, lam_bounds)
    if steps < 1 or (batch_size is not None and batch_size < 1):
        raise InvalidOptionError(f"steps ({steps}) and batch_size ({batch_size}) must be positive")
    average_from = steps // 2 if average_from is None else int(average_from)
    dev = resolve_device(device)

    use_experts = z_estimator in UNBIASED
    sets = domains + (expert_samples if use_experts else [])
    batches = _Batches(sets, batch_size, dev, dtype)
    n_dom_rows = int((batches.set_ids < p).sum())
    lo = torch.as_tensor(lo_np, dtype=dtype, device=dev)
    hi = torch.as_tensor(hi_np, dtype=dtype, device=dev)
    bounded = lam_bounds is not None
    ent_t = None if ent is None else torch.as_tensor(ent, dtype=dtype, device=dev)

    gate.to(device=dev, dtype=dtype)
    opt = torch.optim.AdamW(gate.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, (lambda s: 0.5 * (1 + math.cos(math.pi * s / steps))) if lr_schedule == "cosine" else (lambda s: 1.0)
    )
    generator = torch.Generator().manual_seed(seed)
    lam = torch.as_tensor(PriorSet(p, lower=lo_np, upper=hi_np).feasible_point(), dtype=dtype, device=dev)
    lam_sum = torch.zeros(p, dtype=dtype, device=dev)
    n_avg = 0
    mu = torch.tensor(mu0, dtype=dtype, device=dev)
    z_ema = torch.tensor(float("nan"), dtype=dtype, device=dev)
    history: dict[str, list] = {
        k: [] for k in ("step", "seconds", "lam", "mu", "z", "z_ema", "loss", "nll", "adversary_loss")
    }
    start, elapsed = 0, 0.0
    config = dict(p=p, adversary=adversary, z_estimator=z_estimator, steps=steps, batch_size=batch_size, lr=lr,
                  lr_schedule=lr_schedule, weight_decay=weight_decay, lam_lr=lam_lr, mu_lr=mu_lr, penalty=penalty, mu0=mu0, z_decay=z_decay,
                  lam_bounds=None if not bounded else (lo_np.tolist(), hi_np.tolist()), seed=seed,
                  average_from=average_from, log_every=log_every, dtype=str(dtype))

    if checkpoint is not None and os.path.exists(checkpoint):
        state = torch.load(checkpoint, map_location=dev, weights_only=False)
        if state["config"] != config:
            diff = sorted(k for k in config if state["config"].get(k) != config[k])
            raise InvalidOptionError(f"checkpoint {checkpoint} was written with other settings ({', '.join(diff)})")
        gate.load_state_dict(state["gate"])
        opt.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        lam, lam_sum, mu, z_ema = (state[k].to(dev) for k in ("lam", "lam_sum", "mu", "z_ema"))
        n_avg, start, elapsed, history = state["n_avg"], state["step"], state["seconds"], state["history"]

    def save(step: int) -> None:
        tmp = f"{checkpoint}.tmp"
        torch.save(dict(config=config, gate=gate.state_dict(), optimizer=opt.state_dict(),
                        schedule=schedule.state_dict(), generator=generator.get_state(), lam=lam, lam_sum=lam_sum, mu=mu, z_ema=z_ema,
                        n_avg=n_avg, step=step, seconds=elapsed + time.perf_counter() - t0, history=history), tmp)
        os.replace(tmp, checkpoint)

    t0 = time.perf_counter()
    gate.train()
    for step in tqdm(range(start, steps), initial=start, total=steps, disable=not progress, desc="primal-dual"):
        idx = batches.draw(generator)
        logp = batches.logp[idx]
        log_gate = torch.log_softmax(gate(batches.features[idx]), dim=1)
        log_pg = torch.logsumexp(log_gate + logp, dim=1)
        if use_experts:
            rows = slice(n_dom_rows, None)
            terms = z_terms(z_estimator, log_gate[rows], logp[rows], batches.set_ids[rows] - p)
            means = batches.set_means(torch.cat([-log_pg[:n_dom_rows], terms]))
            nll, z_hat = means[:p], combine(z_estimator, means[p:])
        else:
            nll = batches.set_means(-log_pg)
            z_hat = combine(z_estimator, batches.set_means(z_terms(z_estimator, log_gate, logp, batches.set_ids)))
        zbar_prev = torch.where(torch.isnan(z_ema), z_hat.detach(), z_ema)
        multiplier = mu + penalty * (zbar_prev - 1)
        loss = lam @ nll + multiplier * (z_hat - 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        with torch.no_grad():
            nll_d = nll.detach()
            if adversary == "nll":
                adv = nll_d
            elif adversary == "kl":
                adv = nll_d - ent_t
            else:
                own = -logp[:n_dom_rows].gather(1, batches.set_ids[:n_dom_rows, None])[:, 0]
                adv = nll_d - batches.set_means(torch.cat([own, torch.zeros_like(log_pg[n_dom_rows:])]))[:p]
            z_ema = z_decay * zbar_prev + (1 - z_decay) * z_hat.detach()
            mu = mu + mu_lr * (z_ema - 1)
            lam = torch.softmax(torch.log(lam) + lam_lr * adv, dim=0)
            if bounded:
                lam = kl_project_capped_simplex(lam, lo, hi)
            if step >= average_from:
                lam_sum = lam_sum + lam
                n_avg += 1
        done = step + 1
        if done % log_every == 0 or done == steps:
            record = dict(step=done, seconds=elapsed + time.perf_counter() - t0, lam=lam.tolist(), mu=float(mu),
                          z=float(z_hat.detach()), z_ema=float(z_ema), loss=float(loss.detach()),
                          nll=nll_d.tolist(), adversary_loss=adv.tolist())
            for key, value in record.items():
                history[key].append(value)
            if callback is not None:
                callback(done, record)
        if checkpoint is not None and (done % checkpoint_every == 0 or done == steps):
            save(done)
    seconds = elapsed + time.perf_counter() - t0

    gate.eval()
    nll_full = evaluate_nll(gate, domains, chunk=eval_chunk)
    z_full = evaluate_z(gate, expert_samples if use_experts else domains, z_estimator, chunk=eval_chunk)
    z_check = None if expert_samples is None else evaluate_z(gate, expert_samples, "expert-samples", chunk=eval_chunk)
    lam_last = lam.detach().cpu().numpy().astype(np.float64)
    lam_out = (lam_sum / n_avg).cpu().numpy().astype(np.float64) if lam_iterate == "average" and n_avg else lam_last
    kl = None if ent is None else nll_full - ent
    return RobustGateResult(
        lam=lam_out, lam_last=lam_last, gate=gate,
        gate_state={k: v.detach().cpu().clone() for k, v in gate.state_dict().items()},
        nll=nll_full, kl=kl, value=None if kl is None else float(kl.max()),
        z=z_full, z_ema=float(z_ema), z_estimator=z_estimator, z_unbiased=z_estimator in UNBIASED,
        z_check=z_check, mu=float(mu), adversary=adversary, steps=steps, seconds=seconds, device=str(dev),
        seed=seed, history={k: np.asarray(v) for k, v in history.items()},
        info=dict(lam_iterate=lam_iterate, batch_size=batch_size, lam_bounds=config["lam_bounds"]),
    )


@torch.no_grad()
def _set_mean(gate, s: SampleSet, fn, dev, dtype, chunk) -> float:
    """``sum_i w_i fn(log g(x_i), log pi(x_i))`` over a whole set (normalised weights), in chunks."""
    probs = s.probabilities()
    total = torch.zeros((), dtype=torch.float64)
    for a in range(0, s.m, chunk):
        feats = s.features[a:a + chunk]
        feats = (feats.to(dtype) if torch.is_floating_point(feats) else feats).to(dev)
        log_gate = torch.log_softmax(gate(feats), dim=1)
        vals = fn(log_gate, s.logp[a:a + chunk].to(device=dev, dtype=dtype))
        total += (probs[a:a + chunk] * vals.double().cpu()).sum()
    return float(total)


def _gate_device(gate: nn.Module):
    ref = next(iter(gate.parameters()))
    return ref.device, ref.dtype


def evaluate_nll(gate: nn.Module, domains: list[SampleSet], *, chunk: int = 65536) -> np.ndarray:
    """``NLL_k = E_{x ~ D_k}[-log pi_g(x)]`` over all samples of each domain (weighted)."""
    dev, dtype = _gate_device(gate)
    return np.array([
        _set_mean(gate, d, lambda lg, lp: -torch.logsumexp(lg + lp, dim=1), dev, dtype, chunk) for d in domains
    ])


def evaluate_z(gate: nn.Module, sets: list[SampleSet], estimator: str, *, chunk: int = 65536) -> float:
    """Z of ``gate`` by ``estimator`` over all samples of ``sets``.

    ``sets`` are the expert-sample sets for ``"expert-samples"`` and ``"importance"``, the
    domain sets for ``"data-shortcut"`` (:mod:`modular.z_estimators`). With weighted
    enumerations (``w = pi_k`` or ``w = D_k``) this is the estimator's expectation.
    """
    dev, dtype = _gate_device(gate)
    means = [
        _set_mean(
            gate, s,
            lambda lg, lp, k=k: z_terms(estimator, lg, lp, torch.full((lg.shape[0],), k, device=lg.device)),
            dev, dtype, chunk,
        )
        for k, s in enumerate(sets)
    ]
    return float(combine(estimator, torch.tensor(means, dtype=torch.float64)))
