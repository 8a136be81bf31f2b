"""Four real text genres from Debian packages, as named byte documents.

``c_source``
    C source code: every ``.c`` and ``.h`` file of the glibc source tarball
    (package ``glibc-source``, ``/usr/src/glibc/glibc-*.tar.*``), one document per
    file (about 14,000 files, 56 MB for glibc 2.36).
``dictionary``
    The 1913 Webster dictionary (package ``dict-gcide``, ``/usr/share/dictd/gcide.*``):
    entries in file order, consecutive entries grouped until a document holds at least
    :data:`DICTIONARY_DOC_BYTES` bytes (about 40 MB in all); the dictd header entries
    (``00-database-*``, ``00-gcide-*``) are left out.
``technical``
    Technical prose: perl's POD documentation (package ``perl-doc``,
    ``/usr/share/perl/*/pod/*.pod``), one document per file (about 9 MB).
``scripture``
    The King James Bible (package ``bible-kjv``, printed by its ``bible`` program),
    one document per chapter (1,189 chapters, about 4.3 MB).

These are the genres of the real-world experiment; the CPython genres of
:mod:`synthetic.text` stay the fallback that needs no package. The readers return
``{name: bytes}``; :func:`synthetic.text.load_text_corpus` splits them by document
hash and checksums every split, for these genres exactly as for the CPython ones.
A genre whose package is absent raises :class:`MissingCorpusError` naming the package
and the command that installs it (the Makefile's set-up runs it where it can).
"""

from __future__ import annotations

import base64
import glob
import gzip
import os
import re
import shutil
import subprocess
import tarfile

from theory.errors import InputError

#: A dictionary document holds consecutive entries up to at least this many bytes.
DICTIONARY_DOC_BYTES = 2048

#: genre -> the Debian package that provides it.
DEBIAN_PACKAGES = {"c_source": "glibc-source", "dictionary": "dict-gcide", "technical": "perl-doc",
                   "scripture": "bible-kjv"}
REAL_GENRES = tuple(DEBIAN_PACKAGES)

#: Where each package puts its text; module attributes so tests can point them elsewhere.
GLIBC_TARBALLS = "/usr/src/glibc/glibc-*.tar.*"
GCIDE_DICT = "/usr/share/dictd/gcide.dict.dz"
GCIDE_INDEX = "/usr/share/dictd/gcide.index"
PERL_POD_GLOB = "/usr/share/perl/*/pod/*.pod"
BIBLE_PROGRAM = "bible"


class MissingCorpusError(InputError):
    """A real-text genre's Debian package is not installed."""


def _missing(genre: str, what: str) -> MissingCorpusError:
    pkg = DEBIAN_PACKAGES[genre]
    return MissingCorpusError(f"text genre {genre!r} needs the Debian package {pkg} ({what} not found): "
                              f"apt-get install -y --no-install-recommends {pkg}")


def _c_source() -> dict[str, bytes]:
    tarballs = sorted(glob.glob(GLIBC_TARBALLS))
    if not tarballs:
        raise _missing("c_source", GLIBC_TARBALLS)
    out = {}
    with tarfile.open(tarballs[-1]) as tf:
        for member in tf:
            if member.isfile() and member.name.endswith((".c", ".h")):
                out[member.name] = tf.extractfile(member).read()
    return out


_DICTD_DIGITS = {c: i for i, c in enumerate(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def _dictd_number(text: str) -> int:
    """dictd's index numbers: base 64, most significant digit first."""
    value = 0
    for c in text:
        value = value * 64 + _DICTD_DIGITS[c]
    return value


def _dictionary() -> dict[str, bytes]:
    if not (os.path.isfile(GCIDE_DICT) and os.path.isfile(GCIDE_INDEX)):
        raise _missing("dictionary", GCIDE_DICT)
    with gzip.open(GCIDE_DICT) as fh:  # dictzip files are gzip files
        data = fh.read()
    spans = {}
    with open(GCIDE_INDEX, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3 or parts[0].startswith("00-"):
                continue
            start, length = _dictd_number(parts[1]), _dictd_number(parts[2])
            spans.setdefault(start, (length, parts[0]))  # several headwords can share one entry
    out, group, size, first = {}, [], 0, None
    for start in sorted(spans):
        length, word = spans[start]
        if first is None:
            first = word
        group.append(data[start:start + length])
        size += length
        if size >= DICTIONARY_DOC_BYTES:
            out[f"{first}#{len(out)}"] = b"".join(group)
            group, size, first = [], 0, None
    if group:
        out[f"{first}#{len(out)}"] = b"".join(group)
    return out


def _technical() -> dict[str, bytes]:
    files = sorted(glob.glob(PERL_POD_GLOB))
    if not files:
        raise _missing("technical", PERL_POD_GLOB)
    out = {}
    for path in files:
        with open(path, "rb") as fh:
            out[os.path.basename(path)] = fh.read()
    return out


#: A chapter heading as the ``bible`` program prints it: a blank line, "Book N", a blank line.
_CHAPTER = re.compile(rb"^\n?([1-3]?\s?[A-Z][A-Za-z ]+ \d+)\n\n", re.MULTILINE)


def _scripture() -> dict[str, bytes]:
    program = shutil.which(BIBLE_PROGRAM)
    if program is None:
        raise _missing("scripture", f"the program {BIBLE_PROGRAM!r}")
    text = subprocess.run([program, "Gen1:1-Rev22:21"], capture_output=True, check=True,
                          env={**os.environ, "COLUMNS": "80"}).stdout
    heads = list(_CHAPTER.finditer(text))
    out = {}
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        out[m.group(1).decode()] = text[m.end():end].strip(b"\n") + b"\n"
    return out


READERS = {"c_source": _c_source, "dictionary": _dictionary, "technical": _technical, "scripture": _scripture}


def available_genres() -> tuple[str, ...]:
    """The real genres whose package is installed (cheap: looks for the files, reads nothing)."""
    present = {"c_source": bool(glob.glob(GLIBC_TARBALLS)),
               "dictionary": os.path.isfile(GCIDE_DICT) and os.path.isfile(GCIDE_INDEX),
               "technical": bool(glob.glob(PERL_POD_GLOB)),
               "scripture": shutil.which(BIBLE_PROGRAM) is not None}
    return tuple(g for g in REAL_GENRES if present[g])
