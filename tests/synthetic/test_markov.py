import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synthetic.errors import EnumerationTooLargeError
from synthetic.finite import exact_kl, finite_instance
from synthetic.markov import MarkovChain, conflict_task, contaminated, random_sparse_chain, shift_chain
from synthetic.sequences import MixtureDomain, all_sequences
from tests.synthetic.conftest import ALPHA, chisquare_pvalue, outcome_index
from theory.divergences import kl
from theory.errors import InputError, InvalidOptionError


def _domains():
    A, B = conflict_task(V=4, T=4, noise=0.1)
    return {
        "A": A,
        "A+25%B (sequence)": contaminated(A, B, 0.25),
        "A+50%B (transition)": contaminated(A, B, 0.5, kind="transition"),
        "sparse order 2": random_sparse_chain(3, 2, 5, support=2, seed=3),
    }


@pytest.mark.parametrize("name", list(_domains()))
def test_enumeration_sums_to_one_and_matches_samples(name):
    dom = _domains()[name]
    outcomes, probs = dom.enumerate()
    assert outcomes.shape == (dom.V**dom.T, dom.T)
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    samples = dom.sample(20_000, seed=11)
    assert chisquare_pvalue(samples, probs, outcome_index(samples, dom.V)) > ALPHA


def test_sampling_is_reproducible():
    dom = _domains()["A+25%B (sequence)"]
    assert np.array_equal(dom.sample(50, seed=5), dom.sample(50, seed=5))
    assert not np.array_equal(dom.sample(50, seed=5), dom.sample(50, seed=6))


@pytest.mark.parametrize("name", list(_domains()))
def test_next_token_laws_agree_with_token_log_probs(name):
    dom = _domains()[name]
    x = dom.sample(40, seed=2)
    lp = dom.token_log_probs(x)
    for t in range(dom.T):
        nxt = dom.next_token_probs(x[:, :t])
        np.testing.assert_allclose(nxt.sum(axis=1), 1.0, atol=1e-12)
        np.testing.assert_allclose(np.log(nxt[np.arange(40), x[:, t]]), lp[:, t], atol=1e-12)


def test_conflict_domains_shift_in_opposite_directions():
    A, B = conflict_task(V=5, T=3, noise=0.05)
    assert A.trans[2].argmax() == 3 and B.trans[2].argmax() == 1
    assert A.trans[2, 3] == pytest.approx(0.95 + 0.05 / 5)
    np.testing.assert_allclose(A.initial, 0.2)


def test_sequence_contamination_is_the_mixture_of_enumerations():
    A, B = conflict_task(V=3, T=4, noise=0.1)
    pa, pb = A.enumerate()[1], B.enumerate()[1]
    np.testing.assert_allclose(contaminated(A, B, 0.25).enumerate()[1], 0.75 * pa + 0.25 * pb, atol=1e-14)


def test_transition_contamination_is_markov_with_mixed_rows():
    A, B = conflict_task(V=3, T=4, noise=0.1)
    C = contaminated(A, B, 0.5, kind="transition")
    assert isinstance(C, MarkovChain)
    np.testing.assert_allclose(C.trans, 0.5 * (A.trans + B.trans))


def test_mixture_log_prob_by_enumeration():
    A, B = conflict_task(V=3, T=3, noise=0.2)
    M = MixtureDomain([A, B], [0.3, 0.7])
    outcomes = all_sequences(3, 3)
    np.testing.assert_allclose(np.exp(M.log_prob(outcomes)), 0.3 * np.exp(A.log_prob(outcomes)) + 0.7 * np.exp(B.log_prob(outcomes)))


def test_finite_instance_and_exact_kl_agree_with_theory():
    A, B = conflict_task(V=4, T=3, noise=0.1)
    D, P, outcomes = finite_instance([A, B], [B, A])
    assert D.shape == P.shape == (2, 64) and outcomes.shape == (64, 3)
    assert exact_kl(A, B) == pytest.approx(kl(D[0], P[0]), abs=1e-12)
    assert exact_kl(A, A) == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=20, deadline=None)
@given(V=st.integers(2, 4), order=st.integers(1, 3), T=st.integers(1, 5), seed=st.integers(0, 10**6))
def test_random_sparse_chain_is_normalised(V, order, T, seed):
    dom = random_sparse_chain(V, order, T, support=min(2, V), seed=seed)
    assert dom.enumerate()[1].sum() == pytest.approx(1.0, abs=1e-12)
    assert (dom.trans >= 0.01 / V - 1e-15).all()


def test_bad_configuration_is_a_clear_error():
    with pytest.raises(EnumerationTooLargeError, match=r"V\^T = 10\^6 = 1000000"):
        shift_chain(10, 6, 1).enumerate()
    with pytest.raises(InputError, match="noise"):
        shift_chain(5, 3, 1, noise=0.0)
    with pytest.raises(InvalidOptionError, match="contamination kind 'blend'"):
        contaminated(*conflict_task(), 0.25, kind="blend")
    with pytest.raises(InputError, match="position 1: token 7"):
        shift_chain(5, 3, 1).log_prob(np.array([[0, 7, 1]]))
    with pytest.raises(InputError, match="rows sums|sums to"):
        MarkovChain(np.ones((6, 5)), 5, 1, 3)


def test_bayes_posterior_mixture_of_experts():
    """The posterior router P(k | x_<t) identifies the direction after one step."""
    from synthetic.sequences import MixtureModel

    A, B = conflict_task(V=5, T=4, noise=0.05)
    gate = MixtureModel([A, B], [0.5, 0.5])
    prefixes = np.array([[0, 1], [0, 4], [3, 3]])
    post = gate.posterior(prefixes)
    np.testing.assert_allclose(post.sum(axis=1), 1.0)
    assert post[0, 0] > 0.98 and post[1, 1] > 0.98
    np.testing.assert_allclose(post[2], [0.5, 0.5])  # the noise step is equally likely under both
    np.testing.assert_allclose(gate.posterior(prefixes[:, :0]), 0.5)
