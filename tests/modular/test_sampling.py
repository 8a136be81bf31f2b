"""Sampling from the gated model: SIR and rejection against the exact pi_g (chi-square)."""

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from modular.sampling import pooled_sampler, rejection_sample, sir_sample
from tests.modular.modular_instances import finite_instance
from theory.errors import InputError
from theory.gates import gate_from_q

#: Significance level of the goodness-of-fit tests (fixed seeds: the outcome is deterministic).
ALPHA = 1e-3


@pytest.fixture(scope="module")
def instance():
    """Enumerable instance: 15 outcomes, 3 experts, a gate in G1 realising a q of the hull."""
    D, P = finite_instance(15, 3, 4)
    lo, hi = P.min(0), P.max(0)
    t = (1 - lo.sum()) / (hi - lo).sum()
    q = lo + t * (hi - lo)
    gate = gate_from_q(q, P)
    logP = torch.as_tensor(np.log(P).T)
    log_gate = torch.log(torch.as_tensor(gate))
    samplers = [lambda m, g, k=k: torch.multinomial(torch.as_tensor(P[k]), m, replacement=True, generator=g)
                for k in range(3)]
    return dict(P=P, q=q, log_experts=lambda x: logP[x], log_gate=lambda x: log_gate[x],
                sample_q0=pooled_sampler(samplers))


def _check_fit(samples, q):
    counts = np.bincount(samples.numpy(), minlength=len(q))
    assert chisquare(counts, q * counts.sum()).pvalue > ALPHA


def test_pooled_sampler_draws_q0(instance):
    x = instance["sample_q0"](30_000, torch.Generator().manual_seed(0))
    _check_fit(x, instance["P"].mean(axis=0))


def test_rejection_sampling_matches_pi_g(instance):
    x, acc = rejection_sample(20_000, instance["sample_q0"], instance["log_experts"], instance["log_gate"],
                              generator=torch.Generator().manual_seed(1))
    assert x.shape == (20_000,)
    _check_fit(x, instance["q"])
    assert abs(acc - 1 / 3) < 0.01  # Z / p with Z = 1


def test_sir_matches_pi_g(instance):
    x, ess = sir_sample(20_000, instance["sample_q0"], instance["log_experts"], instance["log_gate"],
                        generator=torch.Generator().manual_seed(2))
    _check_fit(x, instance["q"])
    assert 0 < ess <= 1


def test_samplers_reject_a_wrong_target(instance):
    """The chi-square check has power: samples of q0 itself are rejected as samples of pi_g."""
    x = instance["sample_q0"](20_000, torch.Generator().manual_seed(3))
    counts = np.bincount(x.numpy(), minlength=15)
    assert chisquare(counts, instance["q"] * counts.sum()).pvalue < ALPHA


def test_rejection_gives_up_on_a_vanishing_gate(instance):
    def tiny(x):
        return torch.full((len(x), 3), -60.0, dtype=torch.float64)

    with pytest.raises(InputError, match="too small"):
        rejection_sample(10, instance["sample_q0"], instance["log_experts"], tiny,
                         generator=torch.Generator().manual_seed(0), max_rounds=3)
