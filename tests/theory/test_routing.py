"""theory.routing, the one router code, against independent references on enumerable bigram
instances: dictionary sums over prefixes (Bayes router, router KL/TV), explicit products
(routed model) and SLSQP on each prefix's simplex (optimal router); the claims adapters of
theory.claims.distillation against it."""

import itertools
import warnings
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize
from scipy.special import logsumexp

import theory.claims.distillation as cd
from theory import routing
from theory.divergences import kl, kl_log
from theory.gates import constant_gate, gated_model
from theory.result import ConvergenceWarning


def _instance(p, V, T, seed):
    rng = np.random.default_rng(seed)
    inst = cd.random_bigram_instance(p, V, T, 0.3, rng)
    gate = rng.dirichlet(np.ones(p), size=V**T)
    return inst, gate, cd.token_log_probs(inst)


def _reference_bayes(tokens, token_logp, gate):
    """gamma_B(k | h) by summing the joint over every sequence with prefix h (a dictionary)."""
    S, T, p = token_logp.shape
    joint = gate * np.exp(token_logp.sum(axis=1))
    out = np.empty((S, T, p))
    for t in range(T):
        mass = defaultdict(lambda: np.zeros(p))
        for s in range(S):
            mass[tuple(tokens[s, :t])] += joint[s]
        for s in range(S):
            m = mass[tuple(tokens[s, :t])]
            out[s, t] = m / m.sum()
    return out


def _reference_optimum(tokens, token_logp, q):
    """min_gamma KL(q || rho_gamma) by the chain rule, each prefix's mixture weights by SLSQP."""
    S, T, p = token_logp.shape
    total = 0.0
    for t in range(T):
        nxt = defaultdict(float)
        probs = {}
        for s in range(S):
            h, v = tuple(tokens[s, :t]), int(tokens[s, t])
            nxt[h, v] += q[s]
            probs[h, v] = np.exp(token_logp[s, t])
        for h in {h for h, _ in nxt}:
            vs = [v for hh, v in nxt if hh == h]
            mass = np.array([nxt[h, v] for v in vs])
            comps = np.array([probs[h, v] for v in vs])
            if mass.sum() == 0:
                continue

            def loss(w):
                return -mass @ np.log(comps @ w)

            res = minimize(loss, np.full(p, 1.0 / p), method="SLSQP", bounds=[(1e-12, 1)] * p,
                           constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
                           options={"ftol": 1e-15, "maxiter": 500})
            cond = mass / mass.sum()
            total += mass.sum() * kl(cond, comps @ res.x)
    return total


@pytest.mark.parametrize("p,V,T,seed", [(2, 2, 3, 0), (3, 3, 3, 1), (2, 3, 4, 2)])
def test_bayes_router_and_routed_model_match_direct_sums(p, V, T, seed):
    inst, gate, lp = _instance(p, V, T, seed)
    tokens = inst.sequences
    bayes = routing.bayes_router(tokens, lp, np.log(gate))
    np.testing.assert_allclose(bayes, _reference_bayes(tokens, lp, gate), atol=1e-12)
    rng = np.random.default_rng(seed)
    router = cd.along_sequences(inst, [rng.dirichlet(np.ones(p), size=V**t) for t in range(T)])  # causal
    direct = np.array([np.prod([router[s, t] @ np.exp(lp[s, t]) for t in range(T)]) for s in range(len(tokens))])
    np.testing.assert_allclose(np.exp(routing.routed_log_prob(router, lp)), direct, rtol=1e-12)
    # a routed model is a distribution on the full enumeration
    assert logsumexp(routing.routed_log_prob(router, lp)) == pytest.approx(0.0, abs=1e-12)


def test_router_divergence_and_tv_match_direct_sums():
    inst, gate, lp = _instance(3, 2, 3, 3)
    rng = np.random.default_rng(4)
    a, b = (rng.dirichlet(np.ones(3), size=(8, 3)) for _ in range(2))
    w = rng.dirichlet(np.ones(8))
    div = sum(w[s] * kl(a[s, t], b[s, t]) for s in range(8) for t in range(3))
    tv = sum(w[s] * 0.5 * np.abs(a[s, t] - b[s, t]).sum() for s in range(8) for t in range(3)) / 3
    assert routing.router_divergence(np.log(w) + 5.0, a, b) == pytest.approx(div, rel=1e-12)
    assert routing.router_tv(np.log(w) - 2.0, a, b) == pytest.approx(tv, rel=1e-12)
    assert routing.router_divergence(np.log(w), a, a) == 0.0


@pytest.mark.parametrize("p,V,T,seed", [(2, 2, 3, 5), (3, 3, 3, 1), (2, 3, 4, 2)])
def test_optimal_router_value_is_certified_against_slsqp(p, V, T, seed):
    inst, gate, lp = _instance(p, V, T, seed)
    q = gated_model(gate, inst.P)
    fit = routing.optimal_router(inst.sequences, lp, np.log(q))
    assert fit.status == "optimal" and fit.gap <= 1e-10
    value = kl_log(np.log(q / q.sum()), routing.routed_log_prob(fit.router, lp))
    assert fit.value == pytest.approx(value, abs=1e-12)
    assert fit.value == pytest.approx(_reference_optimum(inst.sequences, lp, q / q.sum()), abs=fit.gap + 1e-9)


def test_optimal_router_is_exact_for_a_static_gate_and_beats_bayes_for_an_input_dependent_one():
    inst, gate, lp = _instance(3, 3, 3, 6)
    static = constant_gate([0.2, 0.3, 0.5], 27)
    q = gated_model(static, inst.P)
    bayes = routing.bayes_router(inst.sequences, lp, np.log(static))
    fit = routing.optimal_router(inst.sequences, lp, np.log(q), start=bayes)
    assert fit.iterations == 0 and fit.value <= 1e-12  # the Bayes mixture of a static gate is routed
    q = gated_model(gate, inst.P)
    fit = routing.optimal_router(inst.sequences, lp, np.log(q))
    bayes = kl_log(np.log(q / q.sum()), routing.routed_log_prob(routing.bayes_router(inst.sequences, lp,
                                                                                       np.log(gate)), lp))
    assert fit.value < bayes - 1e-6


def test_optimal_router_reports_a_missed_tolerance():
    inst, gate, lp = _instance(3, 3, 3, 1)
    q = gated_model(gate, inst.P)
    with pytest.warns(ConvergenceWarning):
        fit = routing.optimal_router(inst.sequences, lp, np.log(q), max_iter=3)
    assert fit.status == "not_converged" and fit.gap > 1e-10
    exact = routing.optimal_router(inst.sequences, lp, np.log(q))
    # the certificate is honest: the optimum lies within the gap below the reported value
    assert fit.value - fit.gap <= exact.value + 1e-12 <= fit.value + 1e-12


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 3), st.integers(2, 3), st.integers(0, 10**6))
def test_certificate_bounds_the_suboptimality_of_every_router(p, V, seed):
    """value - gap <= KL(q || rho) for every causal router, at any iteration count."""
    inst, gate, lp = _instance(p, V, 3, seed)
    q = gated_model(gate, inst.P)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = routing.optimal_router(inst.sequences, lp, np.log(q), max_iter=seed % 7)
    rng = np.random.default_rng(seed)
    for router in (cd.along_sequences(inst, cd.perturbed_router(cd.per_prefix(inst, fit.router), 1.0, rng)),
                   routing.bayes_router(inst.sequences, lp, np.log(gate))):
        assert fit.value - fit.gap <= kl_log(np.log(q / q.sum()), routing.routed_log_prob(router, lp)) + 1e-12


def test_claims_adapters_keep_the_per_prefix_layout():
    inst, gate, lp = _instance(2, 3, 3, 7)
    star = cd.bayes_router(inst, gate)
    assert [r.shape for r in star] == [(1, 2), (3, 2), (9, 2)]
    seq = routing.bayes_router(inst.sequences, lp, np.log(gate))
    np.testing.assert_array_equal(cd.along_sequences(inst, star), seq)
    # lexicographic enumeration: prefix h of length t is sequence s // V^(T-t)
    groups = routing.prefix_groups(inst.sequences)
    for t in range(inst.T + 1):
        np.testing.assert_array_equal(groups[t], np.arange(27) // 3 ** (3 - t))
    q = gated_model(gate, inst.P)
    q /= q.sum()
    best, cert = cd.best_router(inst, q)
    assert kl(q, cd.routed_model(inst, best)) == pytest.approx(_reference_optimum(inst.sequences, lp, q),
                                                               abs=cert + 1e-9)
    assert list(itertools.chain(*[r.sum(axis=1) for r in best])) == pytest.approx([1.0] * 13)
