import numpy as np
import pytest

from synthetic.errors import EmptySplitError, UnknownDomainError
from synthetic.ngram import NGramModel
from synthetic.text import SPLITS, TEXT_DOMAINS, load_text_corpus, load_text_domain, split_of
from theory.errors import InvalidOptionError


@pytest.fixture(scope="module")
def corpus():
    return load_text_corpus()


def test_two_loads_agree(corpus):
    again = load_text_corpus()
    for d in TEXT_DOMAINS:
        for s in SPLITS:
            a, b = corpus[d][s], again[d][s]
            assert a.checksum == b.checksum and a.names == b.names and len(a.checksum) == 64
            assert a.stream().tobytes() == b.stream().tobytes()
    assert load_text_domain("notes", "val").checksum == corpus["notes"]["val"].checksum


def test_splits_are_disjoint_nonempty_and_sized(corpus):
    for d in TEXT_DOMAINS:
        names = [set(corpus[d][s].names) for s in SPLITS]
        assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
        sizes = np.array([corpus[d][s].n_bytes for s in SPLITS])
        assert (sizes > 5_000).all() and sizes[0] > sizes[1:].max()
        checksums = {corpus[d][s].checksum for s in SPLITS}
        assert len(checksums) == 3


def test_split_depends_only_on_the_name():
    assert split_of("code", "json/decoder.py") == split_of("code", "json/decoder.py")
    assert split_of("code", "x", (1.0, 0.0, 0.0)) == "train"
    assert split_of("code", "x", (0.0, 0.0, 1.0)) == "test"


def test_genres_are_what_they_claim(corpus):
    code = corpus["code"]["train"]
    assert all(n.endswith(".py") and "site-packages" not in n for n in code.names)
    assert "pydoc_data/topics.py" not in code.names + corpus["code"]["val"].names + corpus["code"]["test"].names
    assert all("#" in n for n in corpus["notes"]["train"].names)
    assert corpus["docs"]["train"].docs[0].dtype == np.uint8


def test_genres_are_distinct_for_a_byte_model(corpus):
    # A byte bigram model of each genre predicts its own test split best.
    models = {d: NGramModel(256, 2).fit(list(corpus[d]["train"].docs)) for d in TEXT_DOMAINS}
    for d in TEXT_DOMAINS:
        test_docs = list(corpus[d]["test"].docs)
        nll = {m: -models[m].flat_log_probs(test_docs).mean() for m in TEXT_DOMAINS}
        assert min(nll, key=nll.get) == d


def test_windows_stay_inside_documents(corpus):
    split = corpus["notes"]["test"]
    w = split.windows(16)
    assert w.shape[1] == 16 and w.dtype == np.int64
    assert w.shape[0] == sum(len(range(0, d.size - 15, 16)) for d in split.docs)


def test_bad_configuration_is_a_clear_error():
    with pytest.raises(UnknownDomainError, match="unknown text domain 'wiki'"):
        load_text_domain("wiki", "train")
    with pytest.raises(EmptySplitError, match="'docs' has no document in split 'val'"):
        load_text_domain("docs", "val", fractions=(1.0, 0.0, 0.0))
    with pytest.raises(InvalidOptionError, match="split 'dev'"):
        load_text_domain("docs", "dev")
    with pytest.raises(EmptySplitError, match="length >= T=100000"):
        load_text_domain("notes", "test").windows(100_000)
