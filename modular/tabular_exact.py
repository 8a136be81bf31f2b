"""The exact robust gate when the gate is tabular: theory's finite problem on the samples.

With outcome ids as features, a tabular gate ``g(x, .)`` is free on every outcome, so the
robust problem on the samples is the finite problem of :func:`theory.solve_robust`

    min_{q in hull(P), sum q = 1} max_{lam in Lambda} sum_k lam_k KL(Dhat_k || q)

with ``Dhat_k`` the (weighted) histogram of domain k's samples over the outcome ids and
``P[j, x] = exp(log pi_j(x))`` the experts' values, read from the cached log-probabilities
of every sample (domain or expert samples) that has outcome id x. Outcomes that no sample
shows carry the experts' remaining mass ``1 - sum_{seen x} P[j, x]``; they are pooled into
one extra cell (the gate on unseen ids is the cell's gate; ``Dhat`` gives it no mass), so
the problem stays exactly the finite one when every outcome with expert mass is seen and a
restriction of it (pooled unseen outcomes share one gate) otherwise.

With given entropies ``H_k`` the game the stochastic fit plays is
``a_k(q) = CE(Dhat_k, q) - H_k = KL(Dhat_k || q) + c_k`` with the offsets
``c_k = H(Dhat_k) - H_k`` (the entropies' sampling error): another saddle point than
the histograms' own KL game. It is still one of theory's finite problems
(:func:`offset_instance`): every domain puts half its mass on a private outcome on which
all experts agree, with values that add ``c_k`` (plus a constant common to all domains)
to domain k's KL and halve the whole objective; the saddle point (``lam*`` and the gate
on the real outcomes) is that of the offset game.

The solve is certified (``theory``'s dual gap); it is the reference for the stochastic
fit on tabular data and replaces it when the outcome space fits in memory.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from modular.data import SampleSet, check_sets
from modular.gates import TabularGate
from modular.primal_dual import (
    CONVERGED,
    NOT_CONVERGED,
    TOL_GAP,
    TOL_Z,
    RobustGateResult,
    as_prior,
    check_fit_inputs,
    data_fingerprint,
    residuals,
)
from modular.z_estimators import UNBIASED
from theory import solve_robust
from theory.divergences import entropy
from theory.errors import InputError, InvalidOptionError

#: Agreement required between the cached log-probabilities of two samples with one outcome id.
ID_LOGP_ATOL = 1e-9
#: Logit given to an expert the exact gate does not use: exp(-1e4) is 0 in float64.
ZERO_LOGIT = -1e4


def _ids(s: SampleSet, name: str) -> np.ndarray:
    f = s.features
    if torch.is_floating_point(f) or not (f.ndim == 1 or (f.ndim == 2 and f.shape[1] == 1)):
        raise InputError(f"{name}: the exact tabular solver needs one integer outcome id per sample")
    ids = f.reshape(-1).numpy().astype(np.int64)
    if ids.size and ids.min() < 0:
        raise InputError(f"{name}: outcome id {int(ids.min())} is negative")
    return ids


def empirical_instance(domains: list[SampleSet], expert_samples: list[SampleSet] | None = None,
                       n_outcomes: int | None = None):
    """``(Dhat, P, rest)`` of the samples (module docstring); ``rest`` is True when a pooled
    cell of unseen outcomes was appended (its column is the last)."""
    p = check_sets(domains, "domains")
    sets = [(f"domain {k}", d) for k, d in enumerate(domains)]
    sets += [(f"expert samples {k}", e) for k, e in enumerate(expert_samples or [])]
    all_ids = [_ids(s, name) for name, s in sets]
    n = int(max(int(i.max()) for i in all_ids)) + 1 if n_outcomes is None else int(n_outcomes)
    if max(int(i.max()) for i in all_ids) >= n:
        raise InputError(f"an outcome id is >= the number of outcomes {n}")
    logp = np.full((n, p), np.nan)
    for (name, s), ids in zip(sets, all_ids):
        lp = s.logp.numpy().astype(np.float64)
        first = np.isnan(logp[ids, 0])
        logp[ids[first]] = lp[first]
        known = logp[ids]
        close = np.isclose(known, lp, rtol=0, atol=ID_LOGP_ATOL) | (np.isneginf(known) & np.isneginf(lp))
        if not close.all():
            i = int(np.flatnonzero(~close.all(axis=1))[0])
            raise InputError(f"{name}: outcome id {int(ids[i])} has two different expert log-probability rows; "
                             "features are not outcome ids")
    seen = ~np.isnan(logp[:, 0])
    P = np.exp(logp[seen]).T
    mass = P.sum(axis=1)
    if (mass > 1 + 1e-6).any():
        k = int(np.argmax(mass))
        raise InputError(f"expert {k} gives the seen outcomes total probability {mass[k]:.6g} > 1")
    Dhat = np.zeros((p, int(seen.sum())))
    col = np.cumsum(seen) - 1
    for k, d in enumerate(domains):
        np.add.at(Dhat[k], col[all_ids[k]], d.probabilities().numpy())
    left = np.clip(1.0 - mass, 0.0, None)
    rest = bool(left.max() > 1e-12)
    if rest:
        P = np.hstack([P, left[:, None]])
        Dhat = np.hstack([Dhat, np.zeros((p, 1))])
    return Dhat, P / P.sum(axis=1, keepdims=True) if not rest else P, rest, seen


def offset_instance(D, P, offsets):
    """A finite instance whose linearised robust game is ``sum_k lam_k (KL(D_k || q) + c_k)``.

    ``D' = [D / 2, I / 2]`` (domain k's private outcome ``n + k``) and
    ``P' = [P / 2, r]`` with ``r_k = softmax(-c)_k / 2`` on every expert row; then for
    ``q' = [q / 2, r]``, ``KL(D'_k || q') = (KL(D_k || q) + c_k + C) / 2`` with
    ``C = log sum_j exp(-c_j)``. The private outcomes' gate is irrelevant (the experts
    agree there), so ``lam*`` and the gate on the first n outcomes are the offset game's,
    and its value is ``2 V' - C``.

    Returns ``(D', P', C)``.
    """
    D, P = np.asarray(D, dtype=np.float64), np.asarray(P, dtype=np.float64)
    c = np.asarray(offsets, dtype=np.float64)
    p = D.shape[0]
    C = float(np.log(np.exp(-(c - c.min())).sum()) - c.min())
    r = 0.5 * np.exp(-c - C)
    return np.hstack([0.5 * D, 0.5 * np.eye(p)]), np.hstack([0.5 * P, np.tile(r, (P.shape[0], 1))]), C


def solve_tabular_exact(domains: list[SampleSet], expert_samples: list[SampleSet] | None = None, *,
                        n_outcomes: int | None = None, entropies=None, adversary: str = "kl",
                        z_estimator: str | None = None, prior=None, tol: float = 1e-9,
                        tol_gap: float = TOL_GAP, tol_z: float = TOL_Z, seed: int = 0) -> RobustGateResult:
    """Solve the robust tabular gate on the samples exactly (module docstring).

    The game solved is the KL game with the given entropies (``a_k = nll_k - H_k``, the
    stochastic fit's; :func:`offset_instance`) or, without them, the histograms' own KL.
    The excess and NLL adversaries are refused (only the KL game is offered here).
    ``status`` is the certificate of the dual solver (``"converged"`` iff its certified
    gap is within ``tol``); the residuals ``gap`` and ``z`` are then measured on the sample
    sets exactly as for the stochastic fit.

    Returns
    -------
    RobustGateResult with ``info["certified_gap"]``, ``info["empirical_value"]`` (the robust
    value of the game solved, on the histograms) and ``info["unseen_cell"]``.
    """
    if adversary != "kl":
        raise InvalidOptionError(f"the exact tabular solver solves the KL game; adversary {adversary!r} is not "
                                 "one of theory's finite problems (use the stochastic solver)")
    p, z_estimator = check_fit_inputs(domains, expert_samples, z_estimator)
    prior = as_prior(prior, p)
    t0 = time.perf_counter()
    Dhat, P, rest, seen = empirical_instance(domains, expert_samples, n_outcomes)
    ent = None if entropies is None else np.asarray(entropies, dtype=np.float64)
    offsets = np.zeros(p) if ent is None else np.asarray(entropy(Dhat), dtype=np.float64) - ent
    if np.abs(offsets).max() > 0:
        D_s, P_s, C = offset_instance(Dhat, P, offsets)
        sol = solve_robust(D_s, P_s, prior=prior, tol=0.5 * tol)
        empirical_value, certified_gap = 2.0 * float(sol.value) - C, 2.0 * float(sol.gap)
    else:
        sol = solve_robust(Dhat, P, prior=prior, tol=tol)
        empirical_value, certified_gap = float(sol.value), float(sol.gap)
    n = seen.size
    logits = np.full((n, p), 0.0)
    g = np.asarray(sol.gate, dtype=np.float64)[:Dhat.shape[1]]
    with np.errstate(divide="ignore"):
        lg = np.where(g > 0, np.log(np.where(g > 0, g, 1.0)), ZERO_LOGIT)
    logits[seen] = lg[:int(seen.sum())]
    if rest:
        logits[~seen] = lg[-1]
    gate = TabularGate(n, p).double()
    with torch.no_grad():
        gate.logits.copy_(torch.as_tensor(logits))
    gate.eval()
    seconds = time.perf_counter() - t0
    if ent is None:
        # The histograms' own entropies: the KL the exact solve minimised.
        ent = np.asarray(entropy(Dhat), dtype=np.float64)
    res = residuals(gate, sol.lam, domains, expert_samples if z_estimator in UNBIASED else domains,
                    adversary="kl", entropies=ent, z_estimator=z_estimator, prior=prior)
    kl = res.nll - ent
    lam = np.asarray(sol.lam, dtype=np.float64)
    return RobustGateResult(
        lam=lam, lam_last=lam, gate=gate, gate_state={k: v.detach().clone() for k, v in gate.state_dict().items()},
        nll=res.nll, kl=kl, value=float(kl.max()), excess=res.nll - res.own_nll, z=res.z, gap=res.gap,
        status=CONVERGED if sol.status == "optimal" else NOT_CONVERGED, tol_gap=tol_gap, tol_z=tol_z,
        z_ema=float("nan"), z_estimator=z_estimator, z_unbiased=z_estimator in UNBIASED,
        z_check=None, mu=float("nan"), adversary="kl", steps=int(sol.iterations), seconds=seconds, device="cpu",
        seed=seed, history={},
        info=dict(solver="exact", certified_gap=certified_gap, certified_tol=tol, empirical_value=empirical_value,
                  theory_status=sol.status, unseen_cell=rest, lam_bounds=None if prior is None else
                  [a.tolist() for a in prior.bounds()], data_fingerprint=data_fingerprint(domains, expert_samples)),
    )
