"""Real-text byte-level domains from the running CPython installation.

Three genres that ship with CPython, each a list of named documents:

``docs``
    Prose of the reference documentation: the topics of ``pydoc_data.topics``
    (the text behind ``help('if')``...), one document per topic.
``code``
    The standard library's own Python source: every ``.py`` file under the stdlib
    directory, excluding ``site-packages``, the test suites (directories ``test``,
    ``tests``, ``idle_test``) and ``pydoc_data/topics.py`` (which holds ``docs``);
    one document per file.
``notes``
    Plain-English project notes: IDLE's change logs, history, read-me, to-do list,
    credits and extension guide (``idlelib/*.txt``) and the interpreter's
    ``LICENSE.txt``: release notes and licence prose, distinct from both reference
    prose and code. There are only eight files, so each paragraph (a block separated
    by blank lines) is one document, named ``file#index``.

The four genres of the real-world experiment (C source, a dictionary, technical prose,
scripture) come from Debian packages and are read by :mod:`synthetic.corpora`; every
function here accepts their names too.

Documents are assigned to ``train``/``val``/``test`` by the sha256 of
``"domain:name"`` (a number in [0, 1) compared with the cumulative split
fractions), so the split does not depend on file order, and adding a file does not
move the others. Each split records a sha256 checksum of its (name, bytes) pairs in
name order.
"""

from __future__ import annotations

import hashlib
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthetic.errors import EmptySplitError, UnknownDomainError
from theory.errors import InputError, InvalidOptionError

TEXT_DOMAINS = ("docs", "code", "notes")
SPLITS = ("train", "val", "test")
NOTES_FILES = ("idlelib/NEWS.txt", "idlelib/NEWS2x.txt", "idlelib/HISTORY.txt", "idlelib/README.txt",
               "idlelib/TODO.txt", "idlelib/CREDITS.txt", "idlelib/extend.txt", "LICENSE.txt")
_EXCLUDED_DIRS = {"site-packages", "test", "tests", "idle_test", "__pycache__"}


def stdlib_dir() -> Path:
    """The directory of the running interpreter's standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def _docs() -> dict[str, bytes]:
    from pydoc_data.topics import topics

    return {name: text.encode("utf-8") for name, text in topics.items()}


def _code() -> dict[str, bytes]:
    root = stdlib_dir()
    out = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if _EXCLUDED_DIRS.intersection(rel.parts[:-1]) or rel.as_posix() == "pydoc_data/topics.py":
            continue
        out[rel.as_posix()] = path.read_bytes()
    return out


def _notes() -> dict[str, bytes]:
    root = stdlib_dir()
    missing = [f for f in NOTES_FILES if not (root / f).is_file()]
    if missing:
        raise InputError(f"text domain 'notes' needs {missing[0]} under {root}, which this installation lacks")
    out = {}
    for f in NOTES_FILES:
        text = (root / f).read_bytes().replace(b"\r\n", b"\n")
        paragraphs = [p.strip(b"\n") for p in text.split(b"\n\n")]
        for i, para in enumerate(p for p in paragraphs if p.strip()):
            out[f"{f}#{i}"] = para
    return out


_READERS = {"docs": _docs, "code": _code, "notes": _notes}


def split_of(domain: str, name: str, fractions=(0.8, 0.1, 0.1)) -> str:
    """The split of document ``name``: ``u = sha256("domain:name")`` read as a number in [0, 1),
    compared with the cumulative split fractions."""
    u = int.from_bytes(hashlib.sha256(f"{domain}:{name}".encode()).digest()[:8], "big") / 2.0**64
    return SPLITS[min(int(np.searchsorted(np.cumsum(fractions), u, side="right")), len(SPLITS) - 1)]


@dataclass(frozen=True)
class TextSplit:
    """The documents of one split of one text domain, as byte arrays."""

    domain: str
    split: str
    names: tuple[str, ...]
    docs: tuple[np.ndarray, ...]  # uint8 arrays
    checksum: str

    @property
    def n_bytes(self) -> int:
        return int(sum(d.size for d in self.docs))

    def stream(self) -> np.ndarray:
        """All documents concatenated (uint8); document boundaries are lost."""
        return np.concatenate(self.docs) if self.docs else np.zeros(0, dtype=np.uint8)

    def windows(self, T: int, stride: int | None = None) -> np.ndarray:
        """Non-overlapping (or ``stride``-spaced) length-``T`` windows inside documents, (m x T) int64."""
        stride = stride or T
        chunks = [np.lib.stride_tricks.sliding_window_view(d, T)[::stride] for d in self.docs if d.size >= T]
        if not chunks:
            raise EmptySplitError(f"text domain {self.domain!r} split {self.split!r} has no document of length >= T={T}")
        return np.concatenate(chunks).astype(np.int64)

    def record(self) -> dict:
        """Provenance: domain, split, sizes, checksum and the interpreter that supplied the text."""
        return {"domain": self.domain, "split": self.split, "documents": len(self.names), "bytes": self.n_bytes,
                "sha256": self.checksum, "python": sys.version.split()[0], "stdlib": str(stdlib_dir())}


def _checksum(names, docs) -> str:
    h = hashlib.sha256()
    for name, doc in zip(names, docs):
        h.update(name.encode() + b"\0" + len(doc).to_bytes(8, "big") + doc.tobytes())
    return h.hexdigest()


def _check_fractions(fractions) -> tuple[float, ...]:
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.shape != (3,) or (fr < 0).any() or abs(fr.sum() - 1) > 1e-9:
        raise InvalidOptionError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    return tuple(float(f) for f in fr)


def _read(domain: str) -> dict[str, bytes]:
    from synthetic.corpora import READERS as DEBIAN_READERS, REAL_GENRES

    readers = {**_READERS, **DEBIAN_READERS}
    if domain not in readers:
        raise UnknownDomainError(f"unknown text domain {domain!r}; known domains: "
                                 f"{', '.join(TEXT_DOMAINS + REAL_GENRES)}")
    return readers[domain]()


def _make_split(domain: str, split: str, documents: dict[str, bytes], fractions) -> TextSplit:
    names = tuple(sorted(n for n in documents if split_of(domain, n, fractions) == split))
    if not names:
        raise EmptySplitError(f"text domain {domain!r} has no document in split {split!r} (fractions {fractions})")
    docs = tuple(np.frombuffer(documents[n], dtype=np.uint8) for n in names)
    return TextSplit(domain, split, names, docs, _checksum(names, docs))


def load_text_domain(domain: str, split: str, fractions=(0.8, 0.1, 0.1)) -> TextSplit:
    """One split (``train``, ``val`` or ``test``) of one text domain (``docs``, ``code``, ``notes``, or a
    genre of :data:`synthetic.corpora.REAL_GENRES`)."""
    if split not in SPLITS:
        raise InvalidOptionError(f"unknown split {split!r}; use one of {SPLITS}")
    fractions = _check_fractions(fractions)
    return _make_split(domain, split, _read(domain), fractions)


def load_text_corpus(domains=TEXT_DOMAINS, fractions=(0.8, 0.1, 0.1)) -> dict[str, dict[str, TextSplit]]:
    """``{domain: {split: TextSplit}}`` for the requested domains and all three splits (one read per domain)."""
    fractions = _check_fractions(fractions)
    out = {}
    for d in domains:
        documents = _read(d)
        out[d] = {s: _make_split(d, s, documents, fractions) for s in SPLITS}
    return out
