"""Count-class scoring of the conflict task against enumeration; Monte Carlo KL against exact KL."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synthetic.conflict_exact import ConflictCounts, ngram_cross_entropy
from synthetic.finite import exact_kl, finite_instance
from synthetic.markov import conflict_task, contaminated
from synthetic.mc_kl import domain_kl, mixture_next_log_probs, next_token_kl, sequence_log_prob, stratified_mean_se
from synthetic.models import TorchSequenceModel
from synthetic.ngram import NGramModel
from synthetic.sequences import MixtureModel
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


@pytest.mark.parametrize("rate,kind", [(0.0, "sequence"), (0.25, "sequence"), (0.5, "transition"), (1.0, "sequence")])
def test_next_token_laws_match_the_domains_and_the_compact_kl_matches_the_dense_one(rate, kind):
    V, T = 5, 4
    A, B, _, _ = _enumerated(V, T, 0.1, rate, kind)
    c = ConflictCounts(V, T, 0.1, rate, kind)
    x = np.vstack([A.sample(60, 0), B.sample(60, 1)])
    dense = c.next_log_probs(x)
    for k, dom in enumerate((A, B)):
        for t in range(T):
            assert np.allclose(dense[k, :, t], np.log(dom.next_token_probs(x[:, :t])), atol=1e-12)
        assert np.allclose(sequence_log_prob(dense[k], x), c.log_prob(x)[k], atol=1e-12)
    assert np.allclose(np.exp(dense[:, :, 1:, :]).sum(axis=3), 1, atol=1e-12)
    rng = np.random.default_rng(2)
    lq = rng.normal(size=(len(x), T, V))
    lq -= np.log(np.exp(lq).sum(axis=2, keepdims=True))
    compact = c.model_kl(x, lq)
    assert np.allclose(compact, np.stack([next_token_kl(dense[k], lq) for k in range(2)]), atol=1e-12)
    # The dense KL is the chain rule's: with q = D_k itself every term vanishes, with another q none does.
    assert np.allclose(c.model_kl(x, dense[1])[1], 0, atol=1e-12)
    assert (compact > 0).all()


def test_a_constant_weight_mixture_factors_by_bayes():
    V, T = 5, 4
    A, B = conflict_task(V, T, 0.2)
    m1, m2 = NGramModel(V, 2, T).fit(A.sample(300, 0)), NGramModel(V, 3, T).fit(B.sample(300, 1))
    mix = MixtureModel([m1, m2], [0.3, 0.7])
    x = np.vstack([A.sample(40, 3), B.sample(40, 4)])
    comps = np.stack([np.stack([np.log(m.next_token_probs(x[:, :t])) for t in range(T)], axis=1) for m in (m1, m2)])
    got = mixture_next_log_probs(np.log([0.3, 0.7]), comps, x)
    ref = np.stack([np.log(mix.next_token_probs(x[:, :t])) for t in range(T)], axis=1)
    assert np.allclose(got, ref, atol=1e-12)
    assert np.allclose(sequence_log_prob(got, x), mix.log_prob(x), atol=1e-12)


def test_class_members_and_class_draws():
    c = ConflictCounts(5, 4, 0.1, 0.25)
    for cl in range(c.n_classes):
        members = c.class_members(cl)
        assert len(np.unique(members, axis=0)) == len(members) == round(np.exp(c.log_mult[cl]))
        assert (c.counts(members)[0] == c.n_plus[cl]).all() and (c.counts(members)[1] == c.n_minus[cl]).all()
    x, strata, complete = c.sample_classes(4000, 0, enumerate_up_to=20)
    assert 0 < complete.sum() < c.n_classes
    assert (c.counts(x)[0] == c.n_plus[strata]).all() and (c.counts(x)[1] == c.n_minus[strata]).all()
    for cl in np.flatnonzero(complete):
        assert (strata == cl).sum() == round(np.exp(c.log_mult[cl]))
    # A sampled class is drawn uniformly: each member of the most-drawn class about equally often.
    x, strata, _ = c.sample_classes(200_000, 1, enumerate_up_to=0)
    big = np.bincount(strata).argmax()
    size = round(np.exp(c.log_mult[big]))
    _, freq = np.unique(x[strata == big], axis=0, return_counts=True)
    expected = (strata == big).sum() / size
    assert len(freq) == size and size > 1 and expected > 500
    assert np.abs(freq - expected).max() < 5 * np.sqrt(expected)


def test_stratified_estimate_of_an_expectation_covers_the_exact_one():
    V, T = 5, 4
    A, B, outcomes, D = _enumerated(V, T, 0.1, 0.25, "sequence")
    c = ConflictCounts(V, T, 0.1, 0.25)

    def f(x):
        return (2 * x[:, 0] + x[:, 1] ** 2 - x[:, 3]).astype(float) + np.sin(x.sum(axis=1))

    z = []
    for seed in range(20):
        x, strata, complete = c.sample_classes(1500, seed, enumerate_up_to=20)
        for k in range(2):
            mean, se = stratified_mean_se(f(x), strata, c.D[k], complete)
            z.append((mean - D[k] @ f(outcomes)) / se)
    z = np.array(z)
    assert np.abs(z).max() < 4.5 and abs(z.mean()) < 0.7 and 0.6 < z.std() < 1.5
    # Everything enumerated: the exact expectation, with zero standard error.
    x, strata, complete = c.sample_classes(10, 0, enumerate_up_to=10**6)
    mean, se = stratified_mean_se(f(x), strata, c.D[0], complete)
    assert complete.all() and se == 0 and mean == pytest.approx(D[0] @ f(outcomes), abs=1e-12)
    # Forgetting the class weights (a plain mean over the strata's draws) is biased.
    assert abs(f(x).mean() - D[0] @ f(outcomes)) > 0.1
