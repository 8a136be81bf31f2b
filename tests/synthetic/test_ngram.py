import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synthetic.finite import exact_kl
from synthetic.markov import conflict_task, random_sparse_chain
from synthetic.ngram import NGramModel
from synthetic.sequences import MixtureDomain, all_sequences
from theory.errors import InputError, InvalidOptionError


@settings(max_examples=25, deadline=None)
@given(
    V=st.integers(2, 5),
    order=st.integers(1, 4),
    smoothing=st.sampled_from(["kneser-ney", "add-k"]),
    seed=st.integers(0, 10**6),
    m=st.integers(1, 30),
)
def test_smoothed_next_token_laws_sum_to_one(V, order, smoothing, seed, m):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, V, size=(m, 6))
    model = NGramModel(V, order, 6, smoothing=smoothing, k=0.5).fit(data, weights=rng.random(m) + 0.1)
    prefixes = rng.integers(0, V, size=(10, 3))
    probs = model.next_token_probs(prefixes)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    assert (probs > 0).all()


@pytest.mark.parametrize("smoothing", ["kneser-ney", "add-k"])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_sequence_probabilities_sum_to_one(smoothing, order):
    dom = random_sparse_chain(3, 2, 5, seed=1)
    model = NGramModel(3, order, 5, smoothing=smoothing).fit(dom.sample(300, seed=0))
    assert np.exp(model.log_prob(all_sequences(3, 5))).sum() == pytest.approx(1.0, abs=1e-12)


def test_token_log_probs_match_next_token_laws():
    dom = random_sparse_chain(4, 2, 6, seed=2)
    model = NGramModel(4, 3, 6).fit(dom.sample(500, seed=1))
    x = dom.sample(20, seed=9)
    lp = model.token_log_probs(x)
    for t in range(6):
        np.testing.assert_allclose(np.log(model.next_token_probs(x[:, :t])[np.arange(20), x[:, t]]), lp[:, t], atol=1e-12)


def test_add_k_matches_the_formula_by_hand():
    data = np.array([[0, 1, 1], [0, 1, 0]])
    model = NGramModel(2, 2, 3, smoothing="add-k", k=0.5).fit(data)
    # after token 1: successors 1 (once) and 0 (once); after BOS: 0 twice.
    np.testing.assert_allclose(model.next_token_probs(np.array([[0, 1]])), [[1.5 / 3, 1.5 / 3]])
    np.testing.assert_allclose(model.next_token_probs(np.zeros((1, 0), dtype=int)), [[2.5 / 3, 0.5 / 3]])


def test_kneser_ney_unseen_context_uses_continuation_counts():
    # Token 1 is three times as frequent as token 0, but both follow two distinct
    # contexts, so the Kneser-Ney unigram gives them equal mass. Context 0 never
    # precedes a token, so its next-token law is that unigram:
    # p(w) = (max(N(w) - d, 0) + d * 4 / 4) / 6 with continuation counts N = (2, 2, 1, 1).
    data = np.array([[2, 0], [3, 0], [1, 1], [1, 1], [1, 1]])
    model = NGramModel(4, 2, 2, discount=0.75).fit(data)
    np.testing.assert_allclose(model.next_token_probs(np.array([[0]])), [[2 / 6, 2 / 6, 1 / 6, 1 / 6]], atol=1e-12)


def test_weighted_counts_equal_replicated_data():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 3, (5, 4)), rng.integers(0, 3, (4, 4))
    weighted = NGramModel(3, 2, 4, smoothing="add-k").fit(np.vstack([a, b]), weights=np.r_[np.full(5, 2.0), np.ones(4)])
    replicated = NGramModel(3, 2, 4, smoothing="add-k").fit(np.vstack([a, a, b]))
    x = all_sequences(3, 4)
    np.testing.assert_allclose(weighted.log_prob(x), replicated.log_prob(x), atol=1e-12)


def test_documents_of_different_lengths_do_not_share_contexts():
    docs = [np.array([0, 1, 2]), np.array([2, 2])]
    model = NGramModel(3, 2, smoothing="add-k").fit(docs)
    # BOS -> 0 and BOS -> 2 once each: the second document starts afresh.
    np.testing.assert_allclose(model.next_token_probs(np.zeros((1, 0), dtype=int)), [[2 / 5, 1 / 5, 2 / 5]])
    assert model.flat_log_probs(docs).shape == (5,)


def test_conflict_interference_of_an_expert_sized_bigram():
    """A bigram (expert size) fit to the even mixture of A and B cannot separate them."""
    A, B = conflict_task(V=5, T=4, noise=0.05)
    expert_a = NGramModel(5, 2, 4).fit(A.sample(20_000, seed=1))
    expert_b = NGramModel(5, 2, 4).fit(B.sample(20_000, seed=2))
    mix = MixtureDomain([A, B], [0.5, 0.5])
    mono = NGramModel(5, 2, 4).fit(mix.sample(40_000, seed=3))
    eps = max(exact_kl(A, expert_a), exact_kl(B, expert_b))
    assert eps < 0.01
    assert exact_kl(mix, mono) > 0.5 > 50 * eps


def test_fit_is_deterministic_with_checksum():
    x = random_sparse_chain(3, 1, 5, seed=0).sample(50, seed=0)
    m1, m2 = NGramModel(3, 2, 5).fit(x), NGramModel(3, 2, 5).fit(x.copy())
    assert m1.data_checksum == m2.data_checksum and len(m1.data_checksum) == 64
    assert m1.data_checksum != NGramModel(3, 2, 5).fit(x[:-1]).data_checksum


def test_bad_configuration_is_a_clear_error():
    with pytest.raises(InvalidOptionError, match="smoothing 'witten-bell'"):
        NGramModel(3, 2, smoothing="witten-bell")
    with pytest.raises(InputError, match="not fitted"):
        NGramModel(3, 2).log_prob(np.zeros((1, 2), dtype=int))
    with pytest.raises(InputError, match="discount"):
        NGramModel(3, 2, discount=1.5)
    with pytest.raises(InputError, match="token 3 outside 0..2"):
        NGramModel(3, 2).fit(np.array([[0, 3]]))


def test_finite_instance_of_ngram_experts_obeys_proposition_2():
    """Constant gate g = lam: KL(D_lam || sum lam_k pi_k) <= sum lam_k eps_k (joint convexity)."""
    from synthetic.finite import finite_instance
    from theory.divergences import kl, mixture

    A, B = conflict_task(V=4, T=4, noise=0.1)
    C = random_sparse_chain(4, 1, 4, seed=5)
    domains = [A, B, C]
    experts = [NGramModel(4, 2, 4).fit(d.sample(300, seed=k)) for k, d in enumerate(domains)]
    D, P, outcomes = finite_instance(domains, experts)
    assert outcomes.shape == (256, 4)
    eps = kl(D, P)
    np.testing.assert_allclose(eps, [exact_kl(d, e) for d, e in zip(domains, experts)], atol=1e-12)
    for lam in np.random.default_rng(0).dirichlet(np.ones(3), size=20):
        assert kl(mixture(lam, D), mixture(lam, P)) <= lam @ eps + 1e-12
