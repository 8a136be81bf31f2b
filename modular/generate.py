"""Generation from frozen experts combined by a causal router or, exactly, by a gate.

Routed (token by token): ``x_t ~ sum_k gamma(x_<t, k) pi_k(. | x_<t)``, the routed
model ``rho_gamma`` of structural distillation (:mod:`modular.distill`). Exact: draws of
the gated model ``pi_g / Z`` over whole sequences by rejection from the pooled experts
(:func:`modular.sampling.rejection_sample`, acceptance about ``Z / p``).
"""

from __future__ import annotations

import torch

from modular.data import sample_set
from modular.evaluate import gate_log_probs
from modular.experts import CausalLM, sequence_log_probs
from modular.gate_io import LoadedGate
from modular.gates import CausalSequenceGate, mixture_log_prob
from modular.sampling import pooled_sampler, rejection_sample


def routed_next_log_probs(router: CausalSequenceGate, experts: list[CausalLM], prefixes: torch.Tensor) -> torch.Tensor:
    """``log sum_k gamma(x_<t, k) pi_k(. | x_<t)`` for (n x t) prefixes, (n x V) float64."""
    n, t = prefixes.shape
    # prefix_logits reads x_<t at position t; the appended token is never read.
    padded = torch.cat([prefixes, torch.zeros((n, 1), dtype=torch.long)], dim=1)
    with torch.inference_mode():
        log_gamma = torch.log_softmax(router.prefix_logits(padded)[:, t].double(), dim=1)
    nxt = torch.stack([e.next_token_log_probs(prefixes).double() for e in experts], dim=2)  # (n x V x p)
    return mixture_log_prob(log_gamma[:, None, :], nxt)


def generate_routed(router: CausalSequenceGate, experts: list[CausalLM], n: int, length: int, *,
                    generator: torch.Generator) -> torch.Tensor:
    """n sequences of ``length`` tokens from the routed model, (n x length)."""
    out = torch.zeros((n, 0), dtype=torch.long)
    for _ in range(length):
        probs = torch.exp(routed_next_log_probs(router, experts, out))
        out = torch.cat([out, torch.multinomial(probs, 1, generator=generator)], dim=1)
    return out


def generate_exact(loaded: LoadedGate, experts: list[CausalLM], n: int, length: int, *,
                   generator: torch.Generator) -> tuple[torch.Tensor, float]:
    """n exact draws of ``pi_g / Z`` (sequences of ``length`` tokens) and the acceptance rate."""

    def log_experts(x):
        return torch.stack([sequence_log_probs(e, x) for e in experts], dim=1)

    def log_gate(x):
        return gate_log_probs(loaded, sample_set(log_experts(x).numpy(), x.numpy(), name="candidates"))

    sampler = pooled_sampler([lambda m, g, e=e: e.sample(m, length, g) for e in experts])
    return rejection_sample(n, sampler, log_experts, log_gate, generator=generator)
