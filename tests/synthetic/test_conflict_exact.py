"""Count-class scoring of the conflict task against enumeration; Monte Carlo KL against exact KL."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synthetic.conflict_exact import ConflictCounts, ngram_cross_entropy
from synthetic.finite import exact_kl, finite_instance
from synthetic.markov import conflict_task, contaminated
from synthetic.mc_kl import domain_kl
from synthetic.models import TorchSequenceModel
from synthetic.ngram import NGramModel
from theory import cross_entropy, entropy, jsd, kl, mixture
from theory.errors import InputError


def _enumerated(V, T, noise, rate, kind):
    A, B = conflict_task(V, T, noise)
    if rate > 0:
        A = contaminated(A, B, rate, kind)
    outcomes, Da = A.enumerate()
    return A, B, outcomes, np.vstack([Da, np.exp(B.log_prob(outcomes))])


@settings(max_examples=25)
@given(V=st.integers(3, 6), T=st.integers(1, 4), noise=st.floats(0.01, 1.0), rate=st.sampled_from([0.0, 0.25, 0.5, 1.0]),
       kind=st.sampled_from(["sequence", "transition"]), a=st.floats(0, 1), b=st.floats(0, 1))
def test_count_classes_agree_with_enumeration(V, T, noise, rate, kind, a, b):
    _, _, outcomes, D = _enumerated(V, T, noise, rate, kind)
    c = ConflictCounts(V, T, noise, rate, kind)
    assert np.allclose(c.D.sum(axis=1), 1, atol=1e-13)
    assert np.exp(c.log_mult).sum() == pytest.approx(V**T, rel=1e-12)
    with np.errstate(divide="ignore"):
        assert np.allclose(c.log_prob(outcomes), np.log(D), atol=1e-12, rtol=0)
    lam, mu = np.array([a, 1 - a]), np.array([b, 1 - b])
    assert c.entropy(lam) == pytest.approx(entropy(mixture(lam, D)), abs=1e-12)
    assert c.kl(lam, mu) == pytest.approx(kl(mixture(lam, D), mixture(mu, D)), abs=1e-12)
    assert c.cross_entropy(lam, mu) == pytest.approx(cross_entropy(mixture(lam, D), mixture(mu, D)), abs=1e-11)
    assert c.jsd(lam) == pytest.approx(jsd(lam, D), abs=1e-12)


def test_issue_figures_v8_t5_and_v100_t5():
    _, _, _, D = _enumerated(8, 5, 0.05, 0.0, "sequence")
    c = ConflictCounts(8, 5, 0.05)
    for a in np.linspace(0, 1, 6):
        lam = [a, 1 - a]
        assert abs(c.entropy(lam) - entropy(mixture(lam, D))) < 1e-13
        assert abs(c.kl(lam, [0.3, 0.7]) - kl(mixture(lam, D), mixture([0.3, 0.7], D))) < 1e-13
    big = ConflictCounts(100, 5, 0.05)
    assert big.entropy([0.5, 0.5]) == pytest.approx(6.996, abs=5e-4)
    # Independently: H(A) = log V + (T - 1) H(step law); the even mixture adds at most log 2.
    hit, miss = 1 - 0.05 + 0.05 / 100, 0.05 / 100
    h_a = np.log(100) + 4 * -(hit * np.log(hit) + 99 * miss * np.log(miss))
    assert big.entropy([1, 0]) == pytest.approx(h_a, abs=1e-12)
    assert h_a < big.entropy([0.5, 0.5]) <= h_a + np.log(2)


def test_vocabulary_two_is_refused():
    with pytest.raises(InputError, match="V >= 3"):
        ConflictCounts(2, 4)


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("rate,kind", [(0.0, "sequence"), (0.25, "sequence"), (0.5, "transition")])
def test_ngram_chain_rule_cross_entropy_equals_enumeration(order, rate, kind):
    V, T = 5, 4
    A, B, outcomes, D = _enumerated(V, T, 0.1, rate, kind)
    model = NGramModel(V, order, T).fit(np.vstack([A.sample(300, 0), B.sample(100, 1)]))
    logq = model.log_prob(outcomes)
    for k, dom in enumerate((A, B)):
        assert ngram_cross_entropy(dom, model) == pytest.approx(-(D[k] @ logq), abs=1e-11)


def test_monte_carlo_standard_error_covers_the_exact_kl():
    V, T = 5, 4
    A, B = conflict_task(V, T, 0.1)
    A = contaminated(A, B, 0.25)
    model = TorchSequenceModel(V, T, 8, seed=0).fit([A.sample(500, 0), B.sample(500, 1)], steps=40)
    exact = np.array([exact_kl(d, model) for d in (A, B)])
    counts = ConflictCounts(V, T, 0.1, 0.25)
    ses = []
    for m in (2000, 8000):
        test = [A.sample(m, 10 + m), B.sample(m, 11 + m)]
        score = domain_kl([counts.log_prob(x)[k] for k, x in enumerate(test)], [model.log_prob(x) for x in test])
        assert np.all(np.abs(score.kl - exact) < 4 * score.se)
        lams = np.array([[0.0, 1.0], [0.5, 0.5], [0.8, 0.2]])
        value, se = score.at(lams, [counts.jsd(lam) for lam in lams])
        D, P, _ = finite_instance([A, B], [model, model])
        truth = kl(lams @ D, P[0])
        assert np.all(np.abs(value - truth) < 4 * se)
        ses.append(score.se)
    # Quadrupling the samples halves the standard error (to sampling noise of the SE itself).
    assert np.allclose(ses[1] / ses[0], 0.5, rtol=0.15)
