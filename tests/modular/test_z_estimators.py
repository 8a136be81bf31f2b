"""Bias and unbiasedness of the three estimators of the gated model's mass Z."""

import math

import numpy as np
import pytest
import torch

from modular import TabularGate, evaluate_z
from modular.z_estimators import combine, z_terms
from tests.modular.modular_instances import enumerated_sets, finite_instance, tabular_q


@pytest.fixture(scope="module")
def instance():
    """Experts that differ from their domains, and a tabular gate off G1 (it leans to the likeliest expert)."""
    D, P = finite_instance(20, 3, 11, overlap=0.6)
    gate = TabularGate(20, 3).double()
    with torch.no_grad():
        gate.logits.copy_(torch.as_tensor(3 * np.log(P).T + np.random.default_rng(0).normal(size=(20, 3))))
    return D, P, gate


def _exact_z(gate, P):
    return float(tabular_q(gate.logits.detach().numpy(), P).sum())


def test_expectations_over_enumerations(instance):
    D, P, gate = instance
    domains, experts = enumerated_sets(D, P)
    z = _exact_z(gate, P)
    assert abs(z - 1) > 0.05  # a gate off G1, so that Z is informative
    assert evaluate_z(gate, experts, "expert-samples") == pytest.approx(z, abs=1e-12)
    assert evaluate_z(gate, experts, "importance") == pytest.approx(z, abs=1e-12)
    # The shortcut's expectation: sum_x Dbar(x) pi_g(x) / q0(x) with Dbar the pooled domains.
    q = tabular_q(gate.logits.detach().numpy(), P)
    shortcut = float(np.sum(D.mean(axis=0) * q / P.mean(axis=0)))
    assert evaluate_z(gate, domains, "data-shortcut") == pytest.approx(shortcut, abs=1e-12)
    assert abs(shortcut - z) > 0.05


def test_shortcut_is_exact_when_experts_match_domains(instance):
    D, _, gate = instance
    domains, _ = enumerated_sets(D, D)
    assert evaluate_z(gate, domains, "data-shortcut") == pytest.approx(_exact_z(gate, D), abs=1e-12)


def _minibatch_estimates(gate, sets, estimator, batch, reps, seed):
    """``reps`` independent minibatch estimates: ``batch`` draws per set (from its weights)."""
    gen = torch.Generator().manual_seed(seed)
    means = []
    for k, s in enumerate(sets):
        idx = torch.multinomial(s.probabilities(), batch * reps, replacement=True, generator=gen)
        with torch.no_grad():
            lg = torch.log_softmax(gate(s.features[idx]), dim=1)
        means.append(z_terms(estimator, lg, s.logp[idx], torch.full((batch * reps,), k)).reshape(reps, batch).mean(1))
    per_rep = torch.stack(means, dim=1)
    return np.array([float(combine(estimator, row)) for row in per_rep])


@pytest.mark.parametrize("estimator", ["expert-samples", "importance"])
def test_minibatch_estimators_are_unbiased(instance, estimator):
    D, P, gate = instance
    _, experts = enumerated_sets(D, P)
    est = _minibatch_estimates(gate, experts, estimator, batch=8, reps=2000, seed=1)
    se = est.std(ddof=1) / math.sqrt(len(est))
    assert abs(est.mean() - _exact_z(gate, P)) < 4 * se


def test_minibatch_shortcut_is_biased(instance):
    D, P, gate = instance
    domains, _ = enumerated_sets(D, P)
    est = _minibatch_estimates(gate, domains, "data-shortcut", batch=8, reps=2000, seed=1)
    se = est.std(ddof=1) / math.sqrt(len(est))
    assert abs(est.mean() - _exact_z(gate, P)) > 10 * se
