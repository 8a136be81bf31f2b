"""Sampling from the gated model ``pi_g(x) = sum_k g(x,k) pi_k(x)`` through the experts.

Both samplers draw candidates from the pooled experts ``q0 = (1/p) sum_k pi_k`` (the user
supplies a sampler of q0, or one sampler per expert combined by :func:`pooled_sampler`)
and need, for a batch of candidates x, the experts' log-probabilities ``log pi_k(x)``
and the gate's ``log g(x, k)``, both (m x p):

- :func:`sir_sample`: sampling-importance-resampling; weights ``pi_g(x) / q0(x)``
  (self-normalised, so the gate's mass Z need not be one); the output distribution
  tends to ``pi_g / Z`` as the candidate pool grows.
- :func:`rejection_sample`: exact. Since ``pi_g(x) <= max_k pi_k(x) <= p q0(x)``, the
  envelope ``p q0`` is valid; a candidate is accepted with probability
  ``pi_g(x) / (p q0(x)) = sum_k g(x,k) pi_k(x) / sum_k pi_k(x)``; the acceptance rate
  is ``Z / p`` (``1/p`` for a gate in G1).

Samples are torch tensors whose first axis indexes samples; randomness comes from a
``torch.Generator`` only.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from modular.gates import mixture_log_prob
from theory.errors import InputError, InvalidOptionError

Sampler = Callable[[int, torch.Generator], torch.Tensor]
LogProbs = Callable[[torch.Tensor], torch.Tensor]


def pooled_sampler(expert_samplers: list[Sampler]) -> Sampler:
    """A sampler of ``q0 = (1/p) sum_k pi_k`` from one sampler per expert.

    Each of the m draws picks its expert uniformly (multinomial counts), the draws are
    made per expert and shuffled together.
    """
    p = len(expert_samplers)
    if p == 0:
        raise InvalidOptionError("pooled_sampler needs at least one expert sampler")

    def sample(m: int, generator: torch.Generator) -> torch.Tensor:
        counts = torch.bincount(torch.randint(p, (m,), generator=generator), minlength=p).tolist()
        parts = [expert_samplers[k](c, generator) for k, c in enumerate(counts) if c > 0]
        return torch.cat(parts)[torch.randperm(m, generator=generator)]

    return sample


def _log_acceptance(expert_logp: torch.Tensor, log_gate: torch.Tensor) -> torch.Tensor:
    """``log(pi_g(x) / sum_k pi_k(x))`` for a batch of candidates: the log importance weight up to ``log p``."""
    return mixture_log_prob(log_gate, expert_logp) - torch.logsumexp(expert_logp, dim=1)


def accept(expert_logp: torch.Tensor, log_gate: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """The rejection step for candidates ``x ~ q0``: keep x with probability ``pi_g(x) / sum_k pi_k(x)``.

    ``expert_logp`` and ``log_gate`` are (m x p); returns an (m,) bool mask. Kept
    candidates are exact draws of ``pi_g / Z`` (the envelope ``p q0`` bounds ``pi_g``).
    Candidates pooled in equal shares from the p experts also qualify: a candidate of
    expert k is kept with the same probability, and ``sum_k pi_k(x) pi_g(x) / sum_j
    pi_j(x) = pi_g(x)``.
    """
    log_a = _log_acceptance(expert_logp, log_gate)
    u = torch.rand(len(log_a), generator=generator, dtype=torch.float64)
    return torch.log(u).to(log_a.device) < log_a


def sir_sample(n: int, sample_q0: Sampler, log_experts: LogProbs, log_gate: LogProbs, *,
               generator: torch.Generator, pool_factor: int = 20) -> tuple[torch.Tensor, float]:
    """Draw n samples of ``pi_g / Z`` by sampling-importance-resampling from q0.

    Draws a pool of ``pool_factor * n`` candidates from q0, weights them by
    ``w(x) = pi_g(x) / q0(x)`` (log space) and resamples n with replacement in
    proportion to w.

    Returns
    -------
    samples : tensor (n, ...)
    ess : float
        Effective sample size of the pool of M candidates as a fraction of M,
        ``(sum w)^2 / (M sum w^2)``; small values mean a poor proposal.
    """
    if n < 1 or pool_factor < 1:
        raise InvalidOptionError(f"n ({n}) and pool_factor ({pool_factor}) must be positive")
    pool = sample_q0(pool_factor * n, generator)
    log_w = _log_acceptance(log_experts(pool), log_gate(pool)).double()
    probs = torch.softmax(log_w, dim=0)
    ess = float(1.0 / (probs.square().sum() * len(probs)))
    idx = torch.multinomial(probs, n, replacement=True, generator=generator)
    return pool[idx.to(pool.device)], ess


def rejection_sample(n: int, sample_q0: Sampler, log_experts: LogProbs, log_gate: LogProbs, *,
                     generator: torch.Generator, max_rounds: int = 100) -> tuple[torch.Tensor, float]:
    """Draw n exact samples of ``pi_g / Z`` by rejection from the envelope ``p q0``.

    Candidates ``x ~ q0`` are accepted with probability
    ``sum_k g(x,k) pi_k(x) / sum_k pi_k(x)``; rounds of candidates are drawn (sized by the
    acceptance rate seen so far) until n are accepted.

    Returns
    -------
    samples : tensor (n, ...)
    acceptance : float
        Observed acceptance rate (an estimate of ``Z / p``).
    """
    if n < 1:
        raise InvalidOptionError(f"n ({n}) must be positive")
    accepted, n_acc, n_drawn, rate = [], 0, 0, None
    for _ in range(max_rounds):
        need = n - n_acc
        guess = rate if rate else 0.5
        m = max(64, math.ceil(1.2 * need / max(guess, 1e-3)))
        x = sample_q0(m, generator)
        keep = accept(log_experts(x), log_gate(x), generator=generator)
        accepted.append(x[keep])
        n_acc += int(keep.sum())
        n_drawn += m
        rate = n_acc / n_drawn
        if n_acc >= n:
            return torch.cat(accepted)[:n], rate
    raise InputError(f"rejection sampling accepted {n_acc} of {n_drawn} candidates in {max_rounds} rounds "
                     f"(acceptance {rate:.2e}): the gate's mass Z is too small for this envelope")
