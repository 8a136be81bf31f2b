"""Structural distillation on a tiny enumerable bigram instance (V = 3 tokens, T = 4)."""

import itertools

import numpy as np
import pytest
from scipy.special import logsumexp

from modular.distill import (
    bayes_router,
    kl_to_routed,
    optimal_router,
    routed_log_prob,
    router_divergence,
    router_probs,
    router_tv,
    train_router,
)
from theory.gates import gate_from_q

V, T, p = 3, 4, 2


@pytest.fixture(scope="module")
def bigram():
    """All V^T sequences with per-token log-probs under two different bigram experts."""
    rng = np.random.default_rng(0)
    seqs = np.array(list(itertools.product(range(V), repeat=T)))
    init = rng.dirichlet(np.ones(V), size=p)
    trans = rng.dirichlet(np.ones(V) * 0.7, size=(p, V))
    tok_lp = np.empty((len(seqs), T, p))
    for k in range(p):
        tok_lp[:, 0, k] = np.log(init[k][seqs[:, 0]])
        tok_lp[:, 1:, k] = np.log(trans[k][seqs[:, :-1], seqs[:, 1:]])
    seq_p = np.exp(tok_lp.sum(axis=1)).T  # (p x S)
    return seqs, tok_lp, seq_p


def _sample(seqs, tok_lp, log_pg, n, seed):
    rng = np.random.default_rng(seed)
    w = np.exp(log_pg - logsumexp(log_pg))
    idx = rng.choice(len(seqs), size=n, p=w)
    return seqs[idx], tok_lp[idx]


def _prefix_tv(a, b, log_pg):
    """Expected total variation between two routers under pi_g, averaged over positions."""
    return router_tv(log_pg, a, b)


def test_constant_gate_bayes_router_reproduces_the_gated_model(bigram):
    seqs, tok_lp, seq_p = bigram
    lam = np.array([0.3, 0.7])
    log_gate = np.log(np.broadcast_to(lam, (len(seqs), p)))
    log_pg = logsumexp(log_gate + tok_lp.sum(axis=1), axis=1)
    bayes = bayes_router(seqs, tok_lp, log_gate)
    np.testing.assert_allclose(bayes.sum(axis=2), 1, atol=1e-12)
    np.testing.assert_allclose(bayes[:, 0], np.broadcast_to(lam, (len(seqs), p)), atol=1e-12)
    # The Bayesian mixture is exactly autoregressive: routed model = gated model.
    assert abs(kl_to_routed(log_pg, routed_log_prob(bayes, tok_lp))) < 1e-12
    tokens, lp = _sample(seqs, tok_lp, log_pg, 4000, seed=1)
    fit = train_router(tokens, lp, vocab=V, steps=300, batch_size=256, lr=0.03, seed=0, device="cpu")
    learned = router_probs(fit.router, seqs)
    assert _prefix_tv(learned, bayes, log_pg) < 0.06
    assert kl_to_routed(log_pg, routed_log_prob(learned, tok_lp)) < 0.01


@pytest.fixture(scope="module")
def g1_gate(bigram):
    """An input-dependent gate in G1: it realises q = l + t(x) (u - l) with t(x) varying in (0, 1)."""
    seqs, tok_lp, seq_p = bigram
    lo, hi = seq_p.min(0), seq_p.max(0)
    r = np.random.default_rng(1).uniform(0.1, 0.9, size=len(seqs))
    t = r * (1 - lo.sum()) / (r * (hi - lo)).sum()
    assert t.max() < 1
    q = lo + t * (hi - lo)
    gate = gate_from_q(q, seq_p)
    with np.errstate(divide="ignore"):
        log_gate = np.log(gate)
    return log_gate, np.log(q)


def test_routed_models_are_normalised_and_optimal_router_is_best(bigram, g1_gate):
    seqs, tok_lp, _ = bigram
    log_gate, log_q = g1_gate
    np.testing.assert_allclose(logsumexp(log_gate + tok_lp.sum(axis=1), axis=1), log_q, atol=1e-12)
    bayes = bayes_router(seqs, tok_lp, log_gate)
    best = optimal_router(seqs, tok_lp, log_q).router
    for router in (bayes, best, np.full_like(bayes, 0.5)):
        assert abs(logsumexp(routed_log_prob(router, tok_lp))) < 1e-12
    kl_bayes = kl_to_routed(log_q, routed_log_prob(bayes, tok_lp))
    kl_best = kl_to_routed(log_q, routed_log_prob(best, tok_lp))
    kl_const = kl_to_routed(log_q, routed_log_prob(np.full_like(bayes, 0.5), tok_lp))
    assert 0 <= kl_best <= kl_bayes + 1e-12 and kl_best < kl_const
    # With an input-dependent gate the posterior router is NOT the KL-optimal causal router:
    # the gate looks at future tokens, which the posterior over experts cannot anticipate.
    assert kl_bayes - kl_best > 1e-3


def test_learned_router_approaches_the_optimal_router(bigram, g1_gate):
    seqs, tok_lp, _ = bigram
    log_gate, log_q = g1_gate
    best = optimal_router(seqs, tok_lp, log_q).router
    kl_best = kl_to_routed(log_q, routed_log_prob(best, tok_lp))
    tokens, lp = _sample(seqs, tok_lp, log_q, 4000, seed=2)
    fit = train_router(tokens, lp, vocab=V, steps=300, batch_size=256, lr=0.03, seed=0, device="cpu")
    learned = router_probs(fit.router, seqs)
    assert kl_to_routed(log_q, routed_log_prob(learned, tok_lp)) < kl_best + 0.02
    assert _prefix_tv(learned, best, log_q) < 0.1


def test_distillation_identity_holds_as_an_inequality_only(bigram):
    """Thm 18 states KL(pi_g || rho_gamma) = sum_t E KL(gamma_B || gamma); only "<=" holds.

    Per prefix, KL between two mixtures of the same conditionals is at most the KL between
    their weights (log-sum inequality), with equality only when the experts' next-token
    distributions do not overlap.
    """
    seqs, tok_lp, _ = bigram
    log_gate = np.log(np.broadcast_to(np.array([0.3, 0.7]), (len(seqs), p)))
    log_pg = logsumexp(log_gate + tok_lp.sum(axis=1), axis=1)
    bayes = bayes_router(seqs, tok_lp, log_gate)
    rng = np.random.default_rng(3)
    for router in (np.full_like(bayes, 0.5), rng.dirichlet(np.ones(p), size=bayes.shape[:2])):
        lhs = kl_to_routed(log_pg, routed_log_prob(router, tok_lp))
        rhs = router_divergence(log_pg, bayes, router)
        assert lhs <= rhs and rhs - lhs > 0.1
