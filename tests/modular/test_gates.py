"""Gate networks: log-space gated likelihood, causality of the sequence gate, construction."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modular import CausalSequenceGate, LinearGate, MLPGate, gated_log_prob, make_gate
from theory.errors import InvalidOptionError


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(1, 4), st.integers(0, 10_000))
def test_gated_log_prob_matches_probability_space(b, p, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(b, p)) * 3
    logp = rng.normal(size=(b, p)) * 5 - 10
    g = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = np.log((g * np.exp(logp)).sum(axis=1))
    got = gated_log_prob(torch.tensor(logits), torch.tensor(logp)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_gated_log_prob_in_log_space_survives_underflow_and_zero_mass():
    logp = torch.tensor([[-2000.0, -2001.0], [-3.0, -float("inf")]], dtype=torch.float64)
    logits = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
    out = gated_log_prob(logits, logp)
    expected = [np.log(0.5) + np.logaddexp(-2000.0, -2001.0), np.log(0.5) - 3.0]
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-12)
    out.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_sequence_gate_prefix_logits_are_causal():
    torch.manual_seed(0)
    gate = CausalSequenceGate(vocab=5, p=3).double()
    x = torch.randint(5, (4, 7))
    y = x.clone()
    y[:, 4:] = (y[:, 4:] + 1) % 5
    a, b = gate.prefix_logits(x), gate.prefix_logits(y)
    assert a.shape == (4, 7, 3) and gate(x).shape == (4, 3)
    # Positions t <= 4 read x_<t only, which the change at positions >= 4 leaves alone.
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_feature_gates_standardise_their_inputs():
    mean, std = torch.tensor([10.0, -5.0]), torch.tensor([2.0, 4.0])
    lin = LinearGate(2, 3, mean=mean, std=std).double()
    z = torch.tensor([[12.0, -1.0]], dtype=torch.float64)
    expected = lin.linear(torch.tensor([[1.0, 1.0]], dtype=torch.float64))
    torch.testing.assert_close(lin(z), expected)
    assert MLPGate(2, 3, mean=mean, std=std)(z.float()).shape == (1, 3)


def test_make_gate_names_the_problem():
    assert make_gate("tabular", 2, n_outcomes=5).logits.shape == (5, 2)
    with pytest.raises(InvalidOptionError, match="n_outcomes"):
        make_gate("tabular", 2)
    with pytest.raises(InvalidOptionError, match="vocab"):
        make_gate("sequence", 2)
    with pytest.raises(InvalidOptionError, match="unknown gate 'moe'"):
        make_gate("moe", 2, d=3)
