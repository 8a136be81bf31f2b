"""Markov sequence domains with known ground truth: the conflict task and random chains.

A domain of order ``r`` is a table ``trans[c, v] = D(x_t = v | context c)`` over the
``(V+1)^r`` base-``(V+1)`` context codes of :mod:`synthetic.sequences` (the padded
contexts ``BOS..`` give the law of the first ``r`` tokens), so

``log D(x) = sum_t log trans[code_r(x_<t), x_t]``

is exact, and the probabilities of the ``V^T`` sequences sum to one.
"""

from __future__ import annotations

import numpy as np

from synthetic.sequences import (
    MixtureDomain,
    SequenceDomain,
    bos_code,
    check_sequences,
    sample_categorical,
    sequence_context_codes,
)
from theory.errors import InputError, InvalidOptionError
from theory.validation import as_distributions


class MarkovChain(SequenceDomain):
    """Order-``r`` Markov chain over ``{0..V-1}`` with sequences of length ``T``.

    Parameters
    ----------
    trans : array ((V+1)^r, V)
        Next-token distribution of every padded context code (rows sum to one).
    V, order, T : int
    name : str
    """

    def __init__(self, trans, V: int, order: int, T: int, name: str = "markov"):
        if V < 2 or order < 1 or T < 1:
            raise InputError(f"Markov chain {name!r} needs V >= 2, order >= 1, T >= 1; got V={V}, order={order}, T={T}")
        if np.shape(trans) != ((V + 1) ** order, V):
            raise InputError(
                f"Markov chain {name!r}: transition table must be ((V+1)^order, V) = "
                f"({(V + 1) ** order}, {V}), got {np.shape(trans)}"
            )
        self.trans = as_distributions(trans, f"transitions of {name!r}")
        self.V, self.order, self.T, self.name = V, order, T, name
        with np.errstate(divide="ignore"):
            self._log_trans = np.log(self.trans)

    @property
    def initial(self) -> np.ndarray:
        """The law of the first token, ``D(x_0)``."""
        return self.trans[bos_code(self.V, self.order)]

    def token_log_probs(self, seqs) -> np.ndarray:
        seqs = check_sequences(seqs, self.V, self.T)
        codes = sequence_context_codes(seqs, self.V, self.order)
        return self._log_trans[codes, seqs]

    def next_token_probs(self, prefixes) -> np.ndarray:
        prefixes = np.asarray(prefixes, dtype=np.int64)
        m, t = prefixes.shape
        full = np.concatenate([prefixes, np.zeros((m, 1), dtype=np.int64)], axis=1)
        check_sequences(full, self.V, self.T, "prefixes")
        return self.trans[sequence_context_codes(full, self.V, self.order)[:, t]]

    def sample(self, m: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        out = np.empty((m, self.T), dtype=np.int64)
        code = np.full(m, bos_code(self.V, self.order), dtype=np.int64)
        span = (self.V + 1) ** self.order
        for t in range(self.T):
            out[:, t] = sample_categorical(self.trans[code], rng)
            code = (code * (self.V + 1)) % span + out[:, t]
        return out


def _shift_table(V: int, step: int, noise: float) -> np.ndarray:
    """First-order table: ``x_t = x_{t-1} + step mod V`` w.p. ``1 - noise``, else uniform."""
    if not 0 < noise <= 1:
        raise InputError(f"noise must lie in (0, 1] so that every KL is finite, got {noise}")
    trans = np.full((V + 1, V), noise / V)
    trans[np.arange(V), (np.arange(V) + step) % V] += 1 - noise
    trans[V] = 1.0 / V  # the first token is uniform
    return trans


def shift_chain(V: int, T: int, step: int, noise: float = 0.05, name: str | None = None) -> MarkovChain:
    """The domain ``x_{t+1} = x_t + step (mod V)`` with probability ``1 - noise``.

    With probability ``noise`` the next token is uniform on ``{0..V-1}`` (so the
    shifted token has total probability ``1 - noise + noise / V``); ``x_0`` is uniform.
    """
    return MarkovChain(_shift_table(V, step, noise), V, 1, T, name or f"shift{step:+d}")


def conflict_task(V: int = 5, T: int = 4, noise: float = 0.05) -> tuple[MarkovChain, MarkovChain]:
    """The paper's conflict task: domain A steps +1 mod V, domain B steps -1 mod V."""
    return shift_chain(V, T, +1, noise, "A"), shift_chain(V, T, -1, noise, "B")


def contaminated(a: MarkovChain, b: MarkovChain, rate: float, kind: str = "sequence"):
    """Domain ``a`` contaminated by domain ``b`` at the given rate.

    ``kind="sequence"`` (the default) is the sequence-level mixture
    ``(1 - rate) a + rate b``: a fraction ``rate`` of the sequences are whole
    sequences of ``b``, as when a corpus is contaminated by documents of another
    domain. ``kind="transition"`` mixes the next-token laws at every step,
    ``(1 - rate) a(.|c) + rate b(.|c)``, which stays a Markov chain of the same order.
    """
    if not 0 <= rate <= 1:
        raise InputError(f"contamination rate must lie in [0, 1], got {rate}")
    name = f"{a.name}+{rate:g}{b.name}"
    if kind == "sequence":
        return MixtureDomain([a, b], [1 - rate, rate], name=name)
    if kind == "transition":
        if (a.V, a.order, a.T) != (b.V, b.order, b.T):
            raise InputError(f"transition mixing needs equal (V, order, T); got {a.name!r} and {b.name!r}")
        return MarkovChain((1 - rate) * a.trans + rate * b.trans, a.V, a.order, a.T, name)
    raise InvalidOptionError(f"unknown contamination kind {kind!r}; use 'sequence' or 'transition'")


def random_sparse_chain(
    V: int,
    order: int,
    T: int,
    *,
    support: int = 2,
    concentration: float = 1.0,
    noise: float = 0.01,
    seed: int = 0,
    name: str | None = None,
) -> MarkovChain:
    """A random order-``r`` chain whose contexts each favour ``support`` successor tokens.

    Every context draws ``support`` distinct successors uniformly, weights on them from
    ``Dirichlet(concentration)``, and is then mixed with the uniform law at weight
    ``noise`` (so every transition has probability at least ``noise / V``).
    """
    if not 1 <= support <= V:
        raise InputError(f"support must lie in 1..V={V}, got {support}")
    if not 0 < noise <= 1:
        raise InputError(f"noise must lie in (0, 1], got {noise}")
    rng = np.random.default_rng(seed)
    C = (V + 1) ** order
    successors = np.argsort(rng.random((C, V)), axis=1)[:, :support]
    weights = rng.dirichlet(np.full(support, concentration), size=C)
    trans = np.zeros((C, V))
    np.put_along_axis(trans, successors, weights, axis=1)
    trans = (1 - noise) * trans + noise / V
    return MarkovChain(trans, V, order, T, name or f"sparse-o{order}-s{seed}")
