"""Stochastic primal-dual fit of a robust gate from cached expert log-probabilities.

The problem (DESIGN.md 2.3): over gates ``g_theta = softmax(f_theta)`` and mixtures
``lam`` in Lambda (the simplex, optionally with per-domain bounds ``lo <= lam <= hi``),

    min_theta max_lam  sum_k lam_k a_k(theta)   subject to   Z(theta) = 1,

with ``NLL_k(theta) = E_{x ~ D_k}[-log pi_g(x)]``, the adversary's losses ``a_k`` (below)
and ``Z(theta) = sum_x sum_k g(x,k) pi_k(x)``, played through the Lagrangian
``L = sum_k lam_k NLL_k + mu (Z - 1)``:

- theta: AdamW steps on minibatch estimates of ``L`` plus the augmented-Lagrangian
  term ``penalty * (Zbar - 1) * Z`` (``Zbar`` the smoothed Z, held fixed in the
  gradient), i.e. the multiplier seen by theta is ``mu + penalty (Zbar - 1)``;
- mu: dual ascent ``mu <- mu + mu_lr_t (Zbar - 1)`` (an equality constraint: mu is free);
- Z: a minibatch estimate (:mod:`modular.z_estimators`) smoothed by an exponential
  moving average ``Zbar <- z_decay Zbar + (1 - z_decay) Zhat``;
- lam: exponentiated gradient ``lam <- Proj(lam * exp(lam_lr_t * a))`` on the per-domain
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

Step sizes: all three players share one schedule ``s_t`` (``lr_t = lr s_t``,
``lam_lr_t = lam_lr s_t``, ``mu_lr_t = mu_lr s_t``). The default ``"inv-sqrt"``,
``s_t = (1 + t / decay_steps)^(-1/2)``, is the decreasing step of stochastic saddle-point
methods; ``"constant"`` and ``"cosine"`` (annealed to zero at ``steps``) are kept.

Iterates: the returned gate and lam are averages of the iterates (``gate_iterate``,
``lam_iterate``): ``"poly"`` is polynomial-decay averaging
``xbar_t = xbar_{t-1} + (eta + 1) / (t + eta) (x_t - xbar_{t-1})`` (weights growing like
``t^eta``: the average forgets the transient and needs no window), ``"average"`` the
uniform average over steps ``>= average_from``, ``"last"`` the last iterate. The gate is
averaged in parameter space with :class:`torch.optim.swa_utils.AveragedModel`.

Held-out Z: by default (``"importance"`` estimator) a fraction ``z_holdout`` (0.2) of
every expert-sample set is kept out of training. Z on the training samples is optimistic for a flexible gate: a tabular
gate can raise ``g(x, k)`` where outcomes happen to be under-sampled at no cost in the
estimate (a bias of order outcomes / expert samples; measured 0.013-0.015 at 300 outcomes
and 1-2e4 pooled expert samples). The held-out samples give an unbiased Z of the returned
gate, with its standard error; with ``z_debias`` (default) each whole-set check also moves
the target of the training constraint to ``1 - (Z_heldout - Z_train)``, so that the gate's
held-out Z, not its training Z, is driven to one.

Certificate: at the returned iterate, on the whole sample sets, the fit measures the
adversary's gap ``max_k a_k - sum_k lam_k a_k`` (zero when lam is a best response of the
adversary to the gate), ``|Z_train - z_target|`` and the held-out ``|Z - 1|``; ``status`` is
``"converged"`` when the gap is within ``tol_gap``, the training Z within ``tol_z`` of its
target and the held-out Z within ``tol_z`` of one up to two standard errors,
``"not_converged"`` otherwise (:func:`status_of`: one rule, used by ``until_converged`` too).
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from modular.data import SampleSet, check_sets
from modular.device import resolve_device
from modular.gates import mixture_log_prob
from modular.vocabulary import (ADVERSARIES, CONVERGED, ITERATES, LR_SCHEDULES, NOT_CONVERGED, TOL_GAP,  # noqa: F401
                                TOL_Z, UNBIASED)
from modular.z_estimators import check_estimator, combine, z_terms
from theory.errors import InputError, InvalidOptionError, ShapeMismatchError
from theory.prior import PriorSet

LAM_ITERATES = ITERATES
CHECKPOINT_FORMAT = "robust-modular-fit-checkpoint"


@dataclass
class Residuals:
    """Optimality residuals of a gate and a mixture, measured on whole sample sets.

    Attributes
    ----------
    nll : ndarray (p,)
        ``E_{x ~ D_k}[-log pi_g(x)]`` (weighted means over all samples of each domain).
    adversary_loss : ndarray (p,)
        The adversary's losses ``a_k`` (KL, excess or NLL, as the fit's ``adversary``).
    own_nll : ndarray (p,)
        ``E_{x ~ D_k}[-log pi_k(x)]``: each domain's own expert.
    gap : float
        ``max_k a_k - sum_k lam_k a_k`` (>= 0 up to rounding; 0 iff lam only weights the
        worst domains). Over bounded Lambda: ``max_{lam' in Lambda} lam'.a - lam.a``.
    z : float
        Z by the fit's estimator; ``z_residual = |z - 1|``.
    """

    nll: np.ndarray
    adversary_loss: np.ndarray
    own_nll: np.ndarray
    gap: float
    z: float

    @property
    def z_residual(self) -> float:
        return abs(self.z - 1.0)


#: How many standard errors the held-out Z may stray beyond ``tol_z`` before the status says so.
Z_HOLDOUT_SIGMAS = 2.0
#: Default fraction of every expert-sample set held out of training to measure Z (``z_holdout``).
Z_HOLDOUT = 0.2
#: The default hold-out applies to unweighted expert-sample sets of at least this many samples each.
Z_HOLDOUT_MIN_M = 100


def status_of(gap: float, z: float, tol_gap: float, tol_z: float, *, z_target: float = 1.0,
              z_holdout: float | None = None, z_holdout_se: float = 0.0) -> str:
    """The fit's one status rule: ``"converged"`` iff all of

    - ``gap <= tol_gap`` (the adversary's gap on the whole domain sets);
    - ``|z - z_target| <= tol_z`` (``z``: Z on the training samples, the constraint the fit
      plays; ``z_target`` is 1, or ``1 - (z_holdout - z)`` where the fit corrects for the
      training samples' optimism, ``z_debias``);
    - when a held-out Z is given: ``|z_holdout - 1| + Z_HOLDOUT_SIGMAS * z_holdout_se <= tol_z``,
      i.e. Z measured on expert samples the gate was not fitted on is within ``tol_z`` of one
      with its noise counted against it (2 standard errors): a held-out set too small to tell
      says ``not_converged`` rather than forgive a miss. (The lenient ``tol_z + 2 se`` let 8 of
      18 fits at 1e3 samples per domain say ``converged`` while missing the target, and 7
      ``expert-samples`` fits at 1e4.)

    NaN never converges.
    """
    ok = gap <= tol_gap and abs(z - z_target) <= tol_z
    if z_holdout is not None:
        ok = ok and abs(z_holdout - 1.0) + Z_HOLDOUT_SIGMAS * z_holdout_se <= tol_z
    return CONVERGED if ok else NOT_CONVERGED


def _finite_or_none(x):
    """JSON has no NaN or infinity: non-finite numbers become None (null), recursively."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, (list, tuple)):
        return [_finite_or_none(v) for v in x]
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    return x


@dataclass
class RobustGateResult:
    """Outcome of :func:`fit_robust_gate` (or of the exact tabular solve).

    Attributes
    ----------
    lam : ndarray (p,)
        The least-favourable mixture estimate (``lam_iterate``).
    lam_last : ndarray (p,)
        The last iterate.
    gate : torch.nn.Module
        The returned gate (``gate_iterate``; on ``device``); ``gate_state`` is a CPU copy
        of its state dict.
    nll : ndarray (p,)
        ``E_{x ~ D_k}[-log pi_g(x)]`` over all samples of each domain (weighted).
    kl : ndarray (p,) or None
        ``nll - entropies`` when entropies were given.
    value : float or None
        ``max_k kl_k``: the robust KL of the fitted gate (when entropies were given).
    excess : ndarray (p,)
        ``nll - own_nll``: excess over each domain's own expert.
    z : float
        Z of the returned gate over all samples of the estimator's sets.
    gap : float
        The adversary's gap at the returned (gate, lam) on the whole sets (:class:`Residuals`).
    status : {"converged", "not_converged"}
        From ``gap``, ``z``, ``z_target``, ``z_holdout`` (with its standard error) and the
        tolerances ``tol_gap``, ``tol_z`` (:func:`status_of`, one rule).
    z_ema : float
        The smoothed minibatch Z at the last step.
    z_estimator : str
    z_unbiased : bool
        Whether ``z_estimator`` is unbiased (False for the data shortcut).
    z_check : float or None
        The unbiased ``"expert-samples"`` Z on the training expert samples, when expert
        samples were given (None otherwise).
    z_holdout, z_holdout_se : float or None
        Z by the fit's estimator on the held-out expert samples (``z_holdout`` of
        :func:`fit_robust_gate`) and its standard error (:func:`evaluate_z`); None without a
        hold-out. Unlike ``z``, an unbiased estimate of the returned gate's Z.
    z_target : float
        What the fit held Z on its training samples to: 1, or with ``z_debias``
        ``1 - (z_holdout - z)`` from the last whole-set check.
    mu : float
        Final multiplier of the constraint ``Z = 1`` (NaN for the exact solver).
    adversary : str
    steps, seconds, device, seed
        ``steps`` is the number of steps taken (fewer than the budget when
        ``until_converged`` stopped early).
    history : dict of ndarrays
        Every ``log_every`` steps: ``step``, ``seconds`` (wall time of the loop so far),
        ``lam`` (T x p), ``mu``, ``z`` (minibatch), ``z_ema``, ``loss`` (the minibatch
        Lagrangian), ``nll`` (T x p), ``adversary_loss`` (T x p); every ``check_every``
        steps the whole-set residuals at the averaged iterate: ``check_step``,
        ``check_gap``, ``check_z``.
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
    excess: np.ndarray | None = None
    gap: float = float("nan")
    status: str = NOT_CONVERGED
    tol_gap: float = TOL_GAP
    tol_z: float = TOL_Z
    z_holdout: float | None = None
    z_holdout_se: float | None = None
    z_target: float = 1.0
    history: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (no history, no gate parameters; non-finite numbers as None)."""
        out = {
            "status": self.status,
            "gap": self.gap,
            "z_residual": abs(self.z - self.z_target),
            "z_target": self.z_target,
            "z_holdout": self.z_holdout,
            "z_holdout_se": self.z_holdout_se,
            "z_holdout_residual": None if self.z_holdout is None else abs(self.z_holdout - 1.0),
            "tol_gap": self.tol_gap,
            "tol_z": self.tol_z,
            "lam": self.lam.tolist(),
            "lam_last": self.lam_last.tolist(),
            "nll": self.nll.tolist(),
            "kl": None if self.kl is None else self.kl.tolist(),
            "excess": None if self.excess is None else self.excess.tolist(),
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
        return _finite_or_none(out)


def kl_project_capped_simplex(v: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, max_iter: int = 64) -> torch.Tensor:
    """KL projection of a positive vector onto ``{lam : sum lam = 1, lo <= lam <= hi}``.

    Solves ``min_lam KL(lam || v)`` on that set; the solution is ``clip(c v, lo, hi)``
    with ``c > 0`` the root of the monotone ``sum_k clip(c v_k, lo_k, hi_k) = 1``, found
    by bisection on ``log c`` (vectorised, no host synchronisation). The bracket
    ``[log(1/min v) - 200, log(1/min v)]`` starts with every entry at its upper bound at
    the right end and at most ``e^-200`` above its lower bound at the left end.

    This is the torch counterpart of :class:`theory.prior.PriorProjector` for box
    bounds; :func:`theory.simplex.project_capped_simplex` is the Euclidean projection.
    """
    t_hi = -torch.log(v.min())
    t_lo = t_hi - 200.0
    for _ in range(max_iter):
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


def data_fingerprint(*set_lists) -> str:
    """SHA-256 (hex, 16 digits) of the sample sets' log-probabilities, features and weights.

    Identifies the data a checkpoint or gate file was fitted on: the same arrays give the
    same fingerprint on any machine (bytes of contiguous CPU tensors, with shapes and dtypes).
    """
    h = hashlib.sha256()
    for sets in set_lists:
        h.update(b"|" if sets is None else f"[{len(sets)}]".encode())
        for s in sets or []:
            for t in (s.logp, s.features, s.weight):
                if t is None:
                    h.update(b"none")
                    continue
                a = t.detach().cpu().contiguous()
                h.update(f"{tuple(a.shape)}{a.dtype}".encode())
                h.update(a.numpy().tobytes())
    return h.hexdigest()[:16]


def as_prior(prior, p: int) -> PriorSet | None:
    """Lambda as a :class:`theory.PriorSet` with finite box bounds (None: the simplex).

    The stochastic fit projects onto box bounds only, so linear constraints
    ``A lam <= b`` are refused; bounds are given as ``PriorSet(p, lower=lo, upper=hi)``.
    """
    if prior is None:
        return None
    if not isinstance(prior, PriorSet):
        raise InvalidOptionError(f"lambda bounds must be a theory.PriorSet, e.g. PriorSet(p, lower=lo, upper=hi); "
                                 f"got {type(prior).__name__}")
    if prior.p != p:
        raise ShapeMismatchError(f"prior set is for p={prior.p} domains, the data have p={p}")
    if getattr(prior, "A", None) is not None:
        raise InvalidOptionError("the stochastic fit supports box bounds on lambda only (no A lam <= b)")
    lo, hi = prior.bounds()
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise InvalidOptionError("lambda bounds must be finite numbers (NaN or infinite given)")
    return prior


def _positive_finite(name: str, value, *, allow_zero: bool = False) -> float:
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise InvalidOptionError(f"{name} must be a finite {'non-negative' if allow_zero else 'positive'} number, "
                                 f"got {value!r}")
    return v


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise InvalidOptionError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_options(adversary, entropies, lam_iterate, gate_iterate, lr_schedule, p):
    if adversary not in ADVERSARIES:
        raise InvalidOptionError(f"unknown adversary loss {adversary!r}; choose one of {', '.join(ADVERSARIES)}")
    if lr_schedule not in LR_SCHEDULES:
        raise InvalidOptionError(f"unknown lr_schedule {lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")
    for name, it in (("lam_iterate", lam_iterate), ("gate_iterate", gate_iterate)):
        if it not in ITERATES:
            raise InvalidOptionError(f"unknown {name} {it!r}; choose one of {', '.join(ITERATES)}")
    ent = None
    if entropies is not None:
        ent = np.asarray(entropies, dtype=np.float64)
        if ent.shape != (p,):
            raise ShapeMismatchError(f"entropies must have one value per domain (p={p}), got shape {ent.shape}")
        if not np.isfinite(ent).all():
            raise InputError(f"entropy of domain {int(np.flatnonzero(~np.isfinite(ent))[0])} is not finite")
    if adversary == "kl" and ent is None:
        raise InvalidOptionError("adversary 'kl' needs the per-domain entropies H(D_k)")
    return ent


def schedule_factor(kind: str, step: int, steps: int, decay_steps: float) -> float:
    """The step-size factor ``s_t`` shared by the three players (module docstring)."""
    if kind == "inv-sqrt":
        return 1.0 / math.sqrt(1.0 + step / decay_steps)
    if kind == "cosine":
        return 0.5 * (1 + math.cos(math.pi * step / steps))
    return 1.0


def _poly_weight(n_averaged, eta: float):
    """Weight of the new iterate in polynomial-decay averaging after ``n_averaged`` iterates."""
    return (eta + 1.0) / (n_averaged + 1.0 + eta)


class _SigintFlag:
    """Defers SIGINT to the end of the current step, so that the saved state is a whole step.

    Installed only in the main thread (elsewhere Python cannot set signal handlers); the
    previous handler is restored on exit.
    """

    def __init__(self, active: bool):
        self.active = active and threading.current_thread() is threading.main_thread()
        self.hit = False
        self._old = None

    def __enter__(self):
        if self.active:
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.hit = True

    def __exit__(self, *exc):
        if self.active:
            signal.signal(signal.SIGINT, self._old)
        return False


class FitInterrupted(KeyboardInterrupt):
    """SIGINT during a fit: the state after ``step`` steps was saved to ``checkpoint`` (if any)."""

    def __init__(self, step: int, checkpoint: str | None):
        super().__init__(f"interrupted after step {step}")
        self.step, self.checkpoint = step, checkpoint


#: Series recorded in a fit's history (and its checkpoint).
HISTORY_KEYS = ("step", "seconds", "lam", "mu", "z", "z_ema", "loss", "nll", "adversary_loss",
                "check_step", "check_gap", "check_z", "check_z_holdout", "check_z_target", "check_validation",
                "check_converged")


def _load_checkpoint(path: str, dev, config: dict, budget: int) -> dict:
    """Read and validate a checkpoint (no pickled code: ``weights_only=True``); one-line errors."""
    try:
        state = torch.load(path, map_location=dev, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated, foreign or crafted files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read checkpoint {path}: {first[:200]}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path} is not a checkpoint of this fit (no {CHECKPOINT_FORMAT!r} header)")
    old = state.get("config")
    if not isinstance(old, dict):
        raise InputError(f"checkpoint {path} has no configuration")
    if old.get("data") != config["data"]:
        raise InputError(f"checkpoint {path} was written on other data (fingerprint {old.get('data')}, "
                         f"these data {config['data']})")
    if old != config:
        diff = sorted(k for k in set(config) | set(old) if old.get(k) != config.get(k))
        raise InvalidOptionError(f"checkpoint {path} was written with other settings ({', '.join(diff)})")
    step = state.get("step")
    if not isinstance(step, int) or not 0 <= step <= budget:
        raise InputError(f"checkpoint {path}: step {step!r} is outside 0..{budget} (the step budget)")
    for key in ("lam", "lam_avg", "mu", "z_ema", "z_target"):
        if not isinstance(state.get(key), torch.Tensor):
            raise InputError(f"checkpoint {path}: entry {key!r} is missing or not a tensor")
    # The counters and the history are resumed as they are: a wrong type would fail mid-fit.
    for key, kinds in (("n_avg", int), ("streak", int), ("seconds", (int, float))):
        if not isinstance(state.get(key), kinds) or isinstance(state.get(key), bool) or not state[key] >= 0:
            raise InputError(f"checkpoint {path}: entry {key!r} is not a non-negative number")
    history = state.get("history")
    if not (isinstance(history, dict) and set(history) == set(HISTORY_KEYS)
            and all(isinstance(v, list) for v in history.values())):
        raise InputError(f"checkpoint {path}: its training history is not that of this fit")
    lam = state["lam"]
    if lam.shape != (config["p"],) or not torch.isfinite(lam).all() or (lam < 0).any() or \
            abs(float(lam.sum()) - 1) > 1e-6:
        raise InputError(f"checkpoint {path}: lambda is not a finite point of the simplex")
    if not torch.isfinite(state["mu"]).all():
        raise InputError(f"checkpoint {path}: the multiplier mu is not finite")
    if not torch.isfinite(state["z_target"]).all():
        raise InputError(f"checkpoint {path}: the Z target is not finite")
    return state



def _checkpoint_best(state: dict, path: str, selecting: bool, dev, dtype) -> dict | None:
    """The selected check stored in a checkpoint (None before the first check or without validation)."""
    best = state.get("best")
    if best is None or not selecting:
        return None
    ok = (isinstance(best, dict) and isinstance(best.get("step"), int) and isinstance(best.get("ok"), bool)
          and isinstance(best.get("value"), float) and isinstance(best.get("gate"), dict)
          and all(isinstance(best.get(k), torch.Tensor) for k in ("lam", "z_target")))
    if not ok:
        raise InputError(f"checkpoint {path}: its selected check is not that of this fit")
    return dict(best, lam=best["lam"].to(device=dev, dtype=dtype), z_target=best["z_target"].to(device=dev, dtype=dtype))


def check_fit_inputs(domains, expert_samples, z_estimator) -> tuple[int, str]:
    """Check the sample sets and the Z estimator of a fit; returns p and the estimator to use.

    The default estimator is the unbiased ``"importance"`` (proposal ``q0``, the experts'
    average, over all expert samples pooled) when expert samples are given, else the
    (biased, warned) ``"data-shortcut"``. Not ``"expert-samples"``: as a constraint on the
    training samples, its per-expert means let a flexible gate pick, at every outcome, the
    expert whose samples under-represent it, so the fitted gate's true Z exceeds its
    estimate (measured by ``benchmarks.modular_fit_defaults``: |Z - 1| 0.02-0.07 at
    n = 300 outcomes with 1e4-1e5 samples per expert, against at most 0.002 with
    ``"importance"``, whose terms at an outcome are the same whichever expert drew it).
    """
    p = check_sets(domains, "domains")
    if expert_samples is not None:
        check_sets(expert_samples, "expert samples", p)
    if z_estimator is None:
        z_estimator = "importance" if expert_samples is not None else "data-shortcut"
    check_estimator(z_estimator, expert_samples is not None)
    return p, z_estimator

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
    lr_schedule: str = "inv-sqrt",
    decay_steps: float = 100.0,
    weight_decay: float = 0.0,
    lam_lr: float = 0.1,
    mu_lr: float = 0.05,
    penalty: float = 1.0,
    mu0: float = 1.0,
    z_decay: float = 0.9,
    prior: PriorSet | None = None,
    lam0=None,
    lam_iterate: str = "poly",
    gate_iterate: str = "poly",
    average_eta: float = 3.0,
    average_from: int | None = None,
    tol_gap: float = TOL_GAP,
    tol_z: float = TOL_Z,
    until_converged: bool = False,
    z_holdout: float | None = None,
    z_debias: bool = True,
    validation: list[SampleSet] | None = None,
    validation_experts: list[SampleSet] | None = None,
    check_every: int = 100,
    patience: int = 3,
    device=None,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    log_every: int = 10,
    eval_chunk: int = 65536,
    progress: bool = False,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    callback: Callable[[int, dict], None] | None = None,
    handle_sigint: bool = False,
) -> RobustGateResult:
    """Fit a robust gate by stochastic primal-dual steps (see the module docstring).

    Solves ``min_theta max_{lam in Lambda} sum_k lam_k a_k(theta)`` s.t. ``Z(theta) = 1``
    through its Lagrangian, from cached expert log-probabilities on samples of each domain
    (and, for an unbiased Z, on samples of each expert).

    Parameters
    ----------
    gate : torch.nn.Module
        Maps a batch of features to (B x p) logits; trained in place (moved to ``device``
        and ``dtype``). With an averaged ``gate_iterate`` the returned ``result.gate`` is
        the averaged copy.
    domains : list of SampleSet
        ``domains[k]``: samples of ``D_k`` with all p experts' log-probabilities.
    expert_samples : list of SampleSet, optional
        ``expert_samples[k]``: samples of ``pi_k``. Needed by the unbiased Z estimators.
    entropies : array (p,), optional
        ``H(D_k)`` in nats; needed by ``adversary="kl"``; gives ``kl`` in the result.
    adversary : {"nll", "excess", "kl"}
        What the lam-player maximises (module docstring).
    z_estimator : {"expert-samples", "importance", "data-shortcut"}, optional
        Default: ``"importance"`` when expert samples are given (:func:`check_fit_inputs`
        says why), else the (biased, warned) ``"data-shortcut"``.
    steps, batch_size
        Step budget; minibatch size per sample set (None: every set whole, with its
        weights: the exact population objective of weighted enumerations).
    lr, lr_schedule, decay_steps, weight_decay
        AdamW on theta and the shared step-size schedule (module docstring): the default
        ``"inv-sqrt"`` halves the steps by ``3 decay_steps`` and keeps decreasing, which
        the benchmark ``benchmarks.modular_fit_defaults`` measured to converge on samples
        where constant steps stall at their noise floor.
    lam_lr, mu_lr, penalty, mu0, z_decay
        Exponentiated-gradient step on lam; dual-ascent step on mu (both scaled by the
        schedule); augmented-Lagrangian weight; initial mu; EMA factor of Z.
    prior : theory.PriorSet, optional
        Lambda (box bounds only, ``PriorSet(p, lower=lo, upper=hi)``); the simplex when None.
    lam0 : array (p,), optional
        The adversary's first mixture, a point of Lambda with no zero entry (default: Lambda's
        feasible point, uniform on the simplex); with a gate started at the best constant
        gate, that game's least-favourable mixture
        (:func:`modular.evaluate.best_static_for`) starts both players at its saddle point.
    lam_iterate, gate_iterate : {"poly", "average", "last"}
        Which lam and which gate to return (module docstring); ``average_eta`` is the
        ``eta`` of ``"poly"``; ``"average"`` runs over steps ``>= average_from`` (default
        half the budget).
    tol_gap, tol_z
        Tolerances of the certificate (``status``, :func:`status_of`).
    z_holdout : float, optional
        Fraction of every expert-sample set kept out of training (:func:`split_holdout`,
        seeded by ``seed``) to measure Z on samples the gate was not fitted on: as a
        constraint on its training samples, Z's estimate is optimistic for a flexible gate
        (a tabular gate raises g where outcomes are under-sampled; the bias grows like
        outcomes / expert samples). The held-out Z and its standard error are reported
        (``z_holdout``, ``z_holdout_se``) and enter the status. Default (None):
        ``Z_HOLDOUT`` (0.2) with the default ``"importance"`` estimator when every expert
        set is unweighted with at least ``Z_HOLDOUT_MIN_M`` samples, else no hold-out
        (weighted enumerations are exact: nothing to hold out; an explicit
        ``"expert-samples"`` keeps all its samples unless ``z_holdout`` is given, so that
        fits written for it are unchanged); 0 turns it off.
    z_debias : bool
        With a hold-out: at every whole-set check, set the target of the training-sample
        constraint to ``z_target = 1 - (z_holdout - z_train)`` (both at the returned
        iterate), so that the gate's held-out, not its training, Z is driven to one: the
        training samples' optimism is measured and subtracted. The gate stays a gate of its
        family (no rescaling: ``g(x, .)`` is a softmax, and scaling g would leave the simplex).
    validation : list of SampleSet, optional
        Samples of every domain that the fit does not train on (a cache's VAL.npz). At
        step 0 and at every check the fit measures, at the iterate it would return, the
        robust objective on them renormalised by the gate's mass,
        ``V_val = max_{lam' in Lambda} sum_k lam'_k a_k(validation) + log Z`` (``Z`` on the
        held-out expert samples when there are any, else on the training ones: the
        objective of the normalised model ``pi_g / Z``), and returns the checked iterate
        with the lowest ``V_val`` among those whose residuals are within tolerance (among
        all checked ones when none is): model selection on held-out data, which stops a
        flexible gate from returning an iterate that has memorised its training windows.
        ``result.info["selected_step"]`` says which.
    validation_experts : list of SampleSet, optional
        Samples of every expert that the fit does not train on (VAL.npz's expert samples):
        the held-out Z sets, in place of the ``z_holdout`` split of ``expert_samples``
        (which then all train). Needs an unbiased ``z_estimator``.
    until_converged, check_every, patience
        Every ``check_every`` steps the residuals are measured on the whole sets at the
        returned iterate and recorded; with ``until_converged`` the fit stops once they are
        within tolerance at ``patience`` consecutive checks (``steps`` is then the most it
        takes).
    device : str or torch.device, optional
        Default CUDA when available, else CPU; results agree to float tolerance.
    dtype, seed
        Arithmetic precision; seed of the minibatch generator.
    log_every, eval_chunk, progress
        History interval; chunk size of whole-set evaluations; tqdm bar.
    checkpoint, checkpoint_every
        If given, the full state (gate, averaged gate, optimiser, lam, mu, Z EMA,
        generator, step, history) is saved there every ``checkpoint_every`` steps and at
        the end, with a fingerprint of the data (:func:`data_fingerprint`); an existing
        checkpoint of the same data and configuration is resumed (loaded without pickled
        code), and the resumed fit ends bit-for-bit where an uninterrupted one would. A
        checkpoint of other data, other settings, beyond the budget or with a non-finite
        state is refused (:class:`~theory.errors.InputError`).
    callback : callable(step, record), optional
        Called with every history record (after the step); may raise to stop.
    handle_sigint : bool
        Finish the current step on SIGINT, save the checkpoint and raise
        :class:`FitInterrupted` (a ``KeyboardInterrupt``).

    Returns
    -------
    RobustGateResult
    """
    p, z_estimator = check_fit_inputs(domains, expert_samples, z_estimator)
    if validation is not None:
        check_sets(validation, "validation domains", p)
    if validation_experts is not None:
        check_sets(validation_experts, "validation expert samples", p)
        if z_estimator not in UNBIASED:
            raise InvalidOptionError(f"validation expert samples measure Z by an unbiased estimator "
                                     f"({', '.join(sorted(UNBIASED))}), not {z_estimator!r}")
        if z_holdout not in (None, 0, 0.0):
            raise InvalidOptionError("z_holdout splits the training expert samples; with validation expert samples "
                                     "those are the held-out ones: give one or the other")
        holdout, train_e, held_e = 0.0, expert_samples, validation_experts
    else:
        holdout = _holdout_fraction(z_holdout, expert_samples, z_estimator)
        train_e, held_e = (expert_samples, None) if holdout == 0 else split_holdout(expert_samples, holdout, seed)
    z_debias = bool(z_debias) and held_e is not None
    ent = _check_options(adversary, entropies, lam_iterate, gate_iterate, lr_schedule, p)
    prior = as_prior(prior, p)
    steps = _positive_int("steps", steps)
    if batch_size is not None:
        _positive_int("batch_size", batch_size)
    checkpoint_every, log_every, check_every, patience = (
        _positive_int(n, v) for n, v in (("checkpoint_every", checkpoint_every), ("log_every", log_every),
                                          ("check_every", check_every), ("patience", patience)))
    lr, lam_lr, decay_steps = (_positive_finite(n, v) for n, v in
                               (("lr", lr), ("lam_lr", lam_lr), ("decay_steps", decay_steps)))
    mu_lr, penalty, weight_decay, average_eta, tol_gap, tol_z = (
        _positive_finite(n, v, allow_zero=True) for n, v in
        (("mu_lr", mu_lr), ("penalty", penalty), ("weight_decay", weight_decay), ("average_eta", average_eta),
         ("tol_gap", tol_gap), ("tol_z", tol_z)))
    if not (math.isfinite(float(mu0)) and 0 <= float(z_decay) < 1):
        raise InvalidOptionError(f"mu0 must be finite and z_decay in [0, 1), got {mu0!r}, {z_decay!r}")
    average_from = steps // 2 if average_from is None else int(average_from)
    dev = resolve_device(device)
    if checkpoint is not None:
        checkpoint = os.fspath(checkpoint)
        parent = os.path.dirname(os.path.abspath(checkpoint))
        if not os.path.isdir(parent):
            raise InputError(f"checkpoint {checkpoint}: directory {parent} does not exist")
        if os.path.isdir(checkpoint):
            raise InputError(f"checkpoint {checkpoint} is a directory")

    use_experts = z_estimator in UNBIASED
    sets = domains + (train_e if use_experts else [])
    batches = _Batches(sets, batch_size, dev, dtype)
    n_dom_rows = int((batches.set_ids < p).sum())
    lo_np, hi_np = (np.zeros(p), np.ones(p)) if prior is None else prior.bounds()
    lo = torch.as_tensor(lo_np, dtype=dtype, device=dev)
    hi = torch.as_tensor(hi_np, dtype=dtype, device=dev)
    bounded = prior is not None
    ent_t = None if ent is None else torch.as_tensor(ent, dtype=dtype, device=dev)

    gate.to(device=dev, dtype=dtype)
    opt = torch.optim.AdamW(gate.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: schedule_factor(lr_schedule, s, steps, decay_steps))
    avg_fn = (lambda a, x, n: a + (x - a) * _poly_weight(n, average_eta)) if gate_iterate == "poly" else None
    gate_avg = AveragedModel(gate, avg_fn=avg_fn, use_buffers=True) if gate_iterate != "last" else None
    generator = torch.Generator().manual_seed(seed)
    lam = torch.as_tensor(_start_lam(lam0, prior, p), dtype=dtype, device=dev)
    lam_avg = lam.clone()
    n_avg = 0
    mu = torch.tensor(float(mu0), dtype=dtype, device=dev)
    z_ema = torch.tensor(float("nan"), dtype=dtype, device=dev)
    z_target = torch.tensor(1.0, dtype=dtype, device=dev)
    history: dict[str, list] = {k: [] for k in HISTORY_KEYS}
    start, elapsed, streak = 0, 0.0, 0
    best = None  # with validation: the selected check (step, value, ok, gate state, lam, z_target)
    config = dict(p=p, data=data_fingerprint(domains, expert_samples), adversary=adversary, z_estimator=z_estimator,
                  steps=steps, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule, decay_steps=decay_steps,
                  weight_decay=weight_decay, lam_lr=lam_lr, mu_lr=mu_lr, penalty=penalty, mu0=float(mu0),
                  z_decay=float(z_decay), lam_bounds=None if not bounded else [lo_np.tolist(), hi_np.tolist()],
                  seed=seed, lam0=None if lam0 is None else _start_lam(lam0, prior, p).tolist(),
                  lam_iterate=lam_iterate, gate_iterate=gate_iterate, average_eta=average_eta,
                  average_from=average_from, log_every=log_every, check_every=check_every,
                  until_converged=bool(until_converged), patience=patience, tol_gap=tol_gap, tol_z=tol_z,
                  z_holdout=holdout, z_debias=z_debias,
                  validation=None if validation is None else data_fingerprint(validation),
                  validation_experts=None if validation_experts is None else data_fingerprint(validation_experts),
                  entropies=None if ent is None else ent.tolist(), dtype=str(dtype))

    if checkpoint is not None and os.path.exists(checkpoint):
        state = _load_checkpoint(checkpoint, dev, config, steps)
        try:
            gate.load_state_dict(state["gate"])
            if gate_avg is not None:
                gate_avg.load_state_dict(state["gate_avg"])
            opt.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            generator.set_state(state["generator"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"checkpoint {checkpoint} does not match this gate: {first[:200]}") from None
        lam, lam_avg, mu, z_ema, z_target = (state[k].to(device=dev, dtype=dtype)
                                             for k in ("lam", "lam_avg", "mu", "z_ema", "z_target"))
        n_avg, start, elapsed, streak = state["n_avg"], state["step"], state["seconds"], state["streak"]
        history = state["history"]
        best = _checkpoint_best(state, checkpoint, validation is not None, dev, dtype)

    def save(step: int) -> None:
        tmp = f"{checkpoint}.tmp{os.getpid()}"
        torch.save(dict(format=CHECKPOINT_FORMAT, config=config, gate=gate.state_dict(),
                        gate_avg=None if gate_avg is None else gate_avg.state_dict(), optimizer=opt.state_dict(),
                        schedule=schedule.state_dict(), generator=generator.get_state(), lam=lam, lam_avg=lam_avg,
                        mu=mu, z_ema=z_ema, z_target=z_target, n_avg=n_avg, step=step, streak=streak,
                        seconds=elapsed + time.perf_counter() - t0, history=history, best=best), tmp)
        os.replace(tmp, checkpoint)

    def returned_gate() -> nn.Module:
        return gate if gate_avg is None else gate_avg.module

    def returned_lam() -> torch.Tensor:
        return lam if lam_iterate == "last" else lam_avg

    own_nll = _own_nll(domains, dev, dtype)
    own_val = None if validation is None else _own_nll(validation, dev, dtype)

    def check(step: int) -> tuple[Residuals, float | None, float | None, bool]:
        """The whole-set residuals at the returned iterate; with validation, keep it if it is the best so far."""
        nonlocal best
        lam_now = returned_lam().cpu().numpy().astype(np.float64)
        res = residuals(returned_gate(), lam_now, domains, train_e if use_experts else domains,
                        adversary=adversary, entropies=ent, z_estimator=z_estimator, prior=prior,
                        own_nll=own_nll, chunk=eval_chunk)
        zh, zh_se = _holdout_z(returned_gate(), held_e, z_estimator, eval_chunk)
        gate.train()
        ok = status_of(res.gap, res.z, tol_gap, tol_z, z_target=float(z_target), z_holdout=zh,
                       z_holdout_se=zh_se) == CONVERGED
        value = float("nan")
        if validation is not None:
            value = validation_value(returned_gate(), validation, adversary=adversary, entropies=ent, prior=prior,
                                     own_nll=own_val, z=res.z if zh is None else zh, chunk=eval_chunk)
            gate.train()
            if best is None or (not ok, value) < (not best["ok"], best["value"]):
                best = dict(step=step, value=value, ok=ok, z_target=z_target.detach().clone(),
                            lam=returned_lam().detach().clone(),
                            gate={k: v.detach().clone() for k, v in returned_gate().state_dict().items()})
        history["check_step"].append(step)
        history["check_gap"].append(res.gap)
        history["check_z"].append(res.z)
        history["check_z_holdout"].append(float("nan") if zh is None else zh)
        history["check_z_target"].append(float(z_target))
        history["check_validation"].append(value)
        history["check_converged"].append(float(ok))
        return res, zh, zh_se, ok

    done = start
    stopped = streak >= patience and until_converged
    t0 = time.perf_counter()
    if validation is not None and start == 0:
        check(0)  # the starting gate is a candidate too (a constant start: the best constant gate)
    gate.train()
    with _SigintFlag(handle_sigint) as sigint:
        bar = tqdm(range(start, steps), initial=start, total=steps, disable=not progress, desc="primal-dual")
        for step in bar:
            if stopped:
                break
            s_t = schedule_factor(lr_schedule, step, steps, decay_steps)
            idx = batches.draw(generator)
            logp = batches.logp[idx]
            log_gate = torch.log_softmax(gate(batches.features[idx]), dim=1)
            log_pg = mixture_log_prob(log_gate, logp)
            if use_experts:
                rows = slice(n_dom_rows, None)
                terms = z_terms(z_estimator, log_gate[rows], logp[rows], batches.set_ids[rows] - p)
                means = batches.set_means(torch.cat([-log_pg[:n_dom_rows], terms]))
                nll, z_hat = means[:p], combine(z_estimator, means[p:])
            else:
                nll = batches.set_means(-log_pg)
                z_hat = combine(z_estimator, batches.set_means(z_terms(z_estimator, log_gate, logp, batches.set_ids)))
            zbar_prev = torch.where(torch.isnan(z_ema), z_hat.detach(), z_ema)
            multiplier = mu + penalty * (zbar_prev - z_target)
            loss = lam @ nll + multiplier * (z_hat - z_target)
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
                mu = mu + (mu_lr * s_t) * (z_ema - z_target)
                lam = torch.softmax(torch.log(lam) + (lam_lr * s_t) * adv, dim=0)
                if bounded:
                    lam = kl_project_capped_simplex(lam, lo, hi)
                if lam_iterate == "poly":
                    lam_avg = lam_avg + (lam - lam_avg) * _poly_weight(n_avg, average_eta)
                    n_avg += 1
                elif lam_iterate == "average" and step >= average_from:
                    lam_avg = lam_avg + (lam - lam_avg) / (n_avg + 1)
                    n_avg += 1
                if gate_avg is not None and (gate_iterate == "poly" or step >= average_from):
                    gate_avg.update_parameters(gate)
            done = step + 1
            if done % log_every == 0 or done == steps:
                record = dict(step=done, seconds=elapsed + time.perf_counter() - t0, lam=lam.tolist(), mu=float(mu),
                              z=float(z_hat.detach()), z_ema=float(z_ema), loss=float(loss.detach()),
                              nll=nll_d.tolist(), adversary_loss=adv.tolist())
                for key, value in record.items():
                    history[key].append(value)
                if callback is not None:
                    callback(done, record)
            if done % check_every == 0 or done == steps:
                res, zh, zh_se, ok = check(done)
                streak = streak + 1 if ok else 0
                stopped = until_converged and streak >= patience
                # The target moves for the steps to come only: the returned gate is judged by the one it played.
                if z_debias and not stopped and done < steps and math.isfinite(zh - res.z):
                    z_target = torch.tensor(1.0 - (zh - res.z), dtype=dtype, device=dev)
            if checkpoint is not None and (done % checkpoint_every == 0 or done == steps or stopped or sigint.hit):
                save(done)
            if sigint.hit:
                bar.close()
                raise FitInterrupted(done, checkpoint)
            if stopped:
                break
        bar.close()
    seconds = elapsed + time.perf_counter() - t0

    out_gate = returned_gate()
    # In float64 and summing to one to float64 precision whatever the fit's dtype (a float32 fit's
    # lam sums to 1 - 2e-7, which the float64 tools downstream refuse as weights).
    lam_last = _float64_weights(lam)
    lam_out = _float64_weights(returned_lam()) if n_avg else lam_last
    if best is not None:
        # The selected check's gate and mixture, judged against the Z target it played.
        out_gate.load_state_dict(best["gate"])
        lam_out = _float64_weights(best["lam"])
        z_target = best["z_target"]
    out_gate.eval()
    res = residuals(out_gate, lam_out, domains, train_e if use_experts else domains, adversary=adversary,
                    entropies=ent, z_estimator=z_estimator, prior=prior, own_nll=own_nll, chunk=eval_chunk)
    zh, zh_se = _holdout_z(out_gate, held_e, z_estimator, eval_chunk)
    z_check = None if train_e is None else evaluate_z(out_gate, train_e, "expert-samples", chunk=eval_chunk)
    kl = None if ent is None else res.nll - ent
    return RobustGateResult(
        lam=lam_out, lam_last=lam_last, gate=out_gate,
        gate_state={k: v.detach().cpu().clone() for k, v in out_gate.state_dict().items()},
        nll=res.nll, kl=kl, value=None if kl is None else float(kl.max()), excess=res.nll - res.own_nll,
        z=res.z, gap=res.gap, tol_gap=tol_gap, tol_z=tol_z, z_holdout=zh, z_holdout_se=zh_se,
        z_target=float(z_target), status=status_of(res.gap, res.z, tol_gap, tol_z, z_target=float(z_target),
                                                   z_holdout=zh, z_holdout_se=zh_se),
        z_ema=float(z_ema), z_estimator=z_estimator, z_unbiased=z_estimator in UNBIASED,
        z_check=z_check, mu=float(mu), adversary=adversary, steps=done, seconds=seconds, device=str(dev),
        seed=seed, history={k: np.asarray(v) for k, v in history.items()},
        info=dict(solver="stochastic", lam_iterate=lam_iterate, gate_iterate=gate_iterate, lr_schedule=lr_schedule,
                  batch_size=batch_size, lam_bounds=config["lam_bounds"], max_steps=steps,
                  until_converged=bool(until_converged), data_fingerprint=config["data"],
                  z_holdout_fraction=holdout, z_holdout_m=None if held_e is None else [s.m for s in held_e],
                  z_debias=z_debias, z_holdout_source=None if held_e is None else (
                      "validation" if validation_experts is not None else "split"),
                  selected_step=None if best is None else int(best["step"]),
                  validation_value=None if best is None else float(best["value"])),
    )


def _start_lam(lam0, prior: PriorSet | None, p: int) -> np.ndarray:
    """The first mixture: ``lam0`` checked (in Lambda, every entry positive: exponentiated
    gradient never leaves a zero), or Lambda's feasible point."""
    if lam0 is None:
        return (PriorSet(p) if prior is None else prior).feasible_point()
    lam = np.asarray(lam0, dtype=np.float64).reshape(-1)
    if lam.shape != (p,) or not np.isfinite(lam).all() or (lam < 0).any() or lam.sum() <= 0:
        raise InvalidOptionError(f"lam0 must be {p} non-negative finite weights, got {np.asarray(lam0).tolist()}")
    lam = np.maximum(lam / lam.sum(), 1e-9)
    lam = lam / lam.sum()
    if prior is not None:
        lo, hi = prior.bounds()
        if (lam < lo - 1e-9).any() or (lam > hi + 1e-9).any():
            raise InvalidOptionError(f"lam0 {lam.round(6).tolist()} is outside the prior set's bounds")
    return lam


def _float64_weights(lam: torch.Tensor) -> np.ndarray:
    w = lam.detach().cpu().numpy().astype(np.float64)
    return w / w.sum()


def _holdout_fraction(z_holdout, expert_samples, z_estimator: str) -> float:
    """The fraction of every expert-sample set the fit holds out to measure Z (``z_holdout``)."""
    if z_holdout is None:
        auto = (z_estimator == "importance" and expert_samples is not None
                and all(s.weight is None and s.m >= Z_HOLDOUT_MIN_M for s in expert_samples))
        return Z_HOLDOUT if auto else 0.0
    frac = _positive_finite("z_holdout", z_holdout, allow_zero=True)
    if frac == 0:
        return 0.0
    if not frac < 1:
        raise InvalidOptionError(f"z_holdout must be in [0, 1), got {z_holdout!r}")
    if z_estimator not in UNBIASED:
        raise InvalidOptionError(f"z_holdout holds out expert samples: it needs an unbiased Z estimator "
                                 f"({', '.join(sorted(UNBIASED))}), not {z_estimator!r}")
    return frac


def _holdout_z(gate: nn.Module, held: list[SampleSet] | None, estimator: str, chunk: int):
    """``(Z, se)`` of ``gate`` on the held-out expert samples (eval mode), ``(None, None)`` without them."""
    if held is None:
        return None, None
    was_training = gate.training
    gate.eval()
    out = evaluate_z(gate, held, estimator, chunk=chunk, with_se=True)
    gate.train(was_training)
    return out


def _own_nll(domains: list[SampleSet], dev, dtype) -> np.ndarray:
    """``E_{x ~ D_k}[-log pi_k(x)]`` for every domain k (weighted means over all samples)."""
    return np.array([float((d.probabilities() * -d.logp[:, k].double()).sum()) for k, d in enumerate(domains)])


def residuals(gate: nn.Module, lam, domains: list[SampleSet], z_sets: list[SampleSet], *, adversary: str,
              entropies=None, z_estimator: str, prior: PriorSet | None = None, own_nll=None,
              chunk: int = 65536) -> Residuals:
    """The certificate of a (gate, lam) pair on whole sample sets (:class:`Residuals`).

    ``a_k`` is ``NLL_k`` (``"nll"``), ``NLL_k - H_k`` (``"kl"``) or ``NLL_k - own_k``
    (``"excess"``); the gap is ``max_{lam' in Lambda} lam'.a - lam.a``, whose maximiser over
    box bounds is :meth:`theory.PriorSet.max_linear` (``max_k a_k`` on the simplex).
    ``z_sets`` are the estimator's sets (expert samples, or the domains for the shortcut).
    """
    was_training = gate.training
    gate.eval()
    nll = evaluate_nll(gate, domains, chunk=chunk)
    z = evaluate_z(gate, z_sets, z_estimator, chunk=chunk)
    gate.train(was_training)
    own = _own_nll(domains, None, None) if own_nll is None else np.asarray(own_nll)
    if adversary == "nll":
        a = nll
    elif adversary == "kl":
        a = nll - np.asarray(entropies, dtype=np.float64)
    else:
        a = nll - own
    lam = np.asarray(lam, dtype=np.float64)
    best = float(a.max()) if prior is None else float(prior.max_linear(a))
    gap = best - float(lam @ a)
    return Residuals(nll=nll, adversary_loss=a, own_nll=own, gap=gap, z=z)


def validation_value(gate: nn.Module, validation: list[SampleSet], *, adversary: str, entropies=None,
                     prior: PriorSet | None = None, own_nll=None, z: float = 1.0, chunk: int = 65536) -> float:
    """The robust objective of the normalised model ``pi_g / Z`` on held-out domain samples.

    ``max_{lam in Lambda} sum_k lam_k a_k + log Z`` with the adversary's losses ``a_k`` on
    ``validation`` (:func:`residuals`); ``+inf`` when ``Z`` is not a positive number.
    """
    was_training = gate.training
    gate.eval()
    nll = evaluate_nll(gate, validation, chunk=chunk)
    gate.train(was_training)
    own = _own_nll(validation, None, None) if own_nll is None else np.asarray(own_nll)
    a = nll if adversary == "nll" else nll - (np.asarray(entropies, dtype=np.float64) if adversary == "kl" else own)
    if not (math.isfinite(z) and z > 0):
        return float("inf")
    worst = float(a.max()) if prior is None else float(prior.max_linear(a))
    return worst + math.log(z)


@torch.no_grad()
def _set_moments(gate, s: SampleSet, fn, dev, dtype, chunk) -> tuple[float, float]:
    """``mean = sum_i w_i t_i`` with ``t_i = fn(log g(x_i), log pi(x_i))`` over a whole set
    (normalised weights ``w``), in chunks, and the variance of that weighted mean as an
    estimate from independent draws, ``sum_i w_i^2 (t_i - mean)^2`` (``var(t) / m`` for
    uniform weights)."""
    probs = s.probabilities()
    s1 = torch.zeros((), dtype=torch.float64)
    w2t2, w2t, w2 = (torch.zeros((), dtype=torch.float64) for _ in range(3))
    for a in range(0, s.m, chunk):
        feats = s.features[a:a + chunk]
        feats = (feats.to(dtype) if torch.is_floating_point(feats) else feats).to(dev)
        log_gate = torch.log_softmax(gate(feats), dim=1)
        vals = fn(log_gate, s.logp[a:a + chunk].to(device=dev, dtype=dtype)).double().cpu()
        w = probs[a:a + chunk]
        s1 += (w * vals).sum()
        w2t2 += (w * w * vals * vals).sum()
        w2t += (w * w * vals).sum()
        w2 += (w * w).sum()
    mean = float(s1)
    return mean, max(float(w2t2 - 2 * mean * w2t + mean * mean * w2), 0.0)


def _set_mean(gate, s: SampleSet, fn, dev, dtype, chunk) -> float:
    """``sum_i w_i fn(log g(x_i), log pi(x_i))`` over a whole set (normalised weights), in chunks."""
    return _set_moments(gate, s, fn, dev, dtype, chunk)[0]


def _gate_device(gate: nn.Module):
    ref = next(iter(gate.parameters()))
    return ref.device, ref.dtype


def evaluate_nll(gate: nn.Module, domains: list[SampleSet], *, chunk: int = 65536) -> np.ndarray:
    """``NLL_k = E_{x ~ D_k}[-log pi_g(x)]`` over all samples of each domain (weighted)."""
    dev, dtype = _gate_device(gate)
    return np.array([
        _set_mean(gate, d, lambda lg, lp: -mixture_log_prob(lg, lp), dev, dtype, chunk) for d in domains
    ])


def evaluate_z(gate: nn.Module, sets: list[SampleSet], estimator: str, *, chunk: int = 65536,
               with_se: bool = False):
    """Z of ``gate`` by ``estimator`` over all samples of ``sets`` (and its standard error).

    ``sets`` are the expert-sample sets for ``"expert-samples"`` and ``"importance"``, the
    domain sets for ``"data-shortcut"`` (:mod:`modular.z_estimators`). With weighted
    enumerations (``w = pi_k`` or ``w = D_k``) this is the estimator's expectation.

    With ``with_se``, returns ``(Z, se)``: ``se^2 = c^2 sum_k Var(mean_k)``, the sets
    taken as independent draws (``Var(mean_k)`` from :func:`_set_moments`; ``c = 1`` for
    the sum of ``"expert-samples"``, ``1/p`` for the average of the other two). ``se`` is
    the noise of Z on samples the gate was *not* fitted on; on its training samples the
    estimate is biased (optimistic) as well.
    """
    dev, dtype = _gate_device(gate)
    moments = [
        _set_moments(
            gate, s,
            lambda lg, lp, k=k: z_terms(estimator, lg, lp, torch.full((lg.shape[0],), k, device=lg.device)),
            dev, dtype, chunk,
        )
        for k, s in enumerate(sets)
    ]
    z = float(combine(estimator, torch.tensor([mu for mu, _ in moments], dtype=torch.float64)))
    if not with_se:
        return z
    scale = 1.0 if estimator == "expert-samples" else 1.0 / len(sets)
    return z, scale * math.sqrt(sum(v for _, v in moments))


def split_holdout(sets: list[SampleSet] | None, fraction: float, seed: int):
    """Split every set into (train, held-out) parts: ``round(fraction m)`` samples held out.

    The held-out indices are a seeded random permutation's first ``round(fraction m)``
    (at least one when ``fraction > 0``, and at least one sample stays for training).
    Returns ``(train, holdout)`` lists (``(None, None)`` for None).
    """
    if sets is None:
        return None, None
    fraction = float(fraction)
    if not (0 < fraction < 1):
        raise InvalidOptionError(f"holdout fraction must be in (0, 1), got {fraction!r}")
    g = torch.Generator().manual_seed(int(np.random.SeedSequence([int(seed), 7919]).generate_state(1)[0]))  # own stream
    train, held = [], []
    for s in sets:
        if s.m < 2:
            raise InputError(f"a set of {s.m} sample cannot be split into training and held-out parts")
        k = min(max(1, round(fraction * s.m)), s.m - 1)
        perm = torch.randperm(s.m, generator=g)
        parts = []
        for ix in (perm[k:].sort().values, perm[:k].sort().values):
            parts.append(SampleSet(s.logp[ix], s.features[ix], None if s.weight is None else s.weight[ix]))
        train.append(parts[0])
        held.append(parts[1])
    return train, held
