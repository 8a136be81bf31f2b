"""Shared machinery of distributions over token sequences of fixed length ``T``.

Every sequence model of the suite (true Markov domains, n-gram experts, torch models)
defines a distribution over ``{0..V-1}^T`` by the chain rule
``pi(x) = prod_t pi(x_t | x_<t)``; the first tokens condition on a padding symbol
``BOS = V``, so the probabilities of all ``V^T`` sequences sum to one exactly.

Contexts of length ``r`` are encoded as integers in base ``V + 1``:
``code = sum_{i=1..r} x_{t-i} (V+1)^(i-1)``, with ``x_s = BOS`` for ``s < 0``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from scipy.special import logsumexp

from synthetic.errors import EnumerationTooLargeError
from theory.errors import InputError, ShapeMismatchError

#: Largest outcome space ``V^T`` that :func:`all_sequences` enumerates.
MAX_ENUMERATION = 200_000


def all_sequences(V: int, T: int, limit: int = MAX_ENUMERATION) -> np.ndarray:
    """All ``V^T`` sequences of length ``T`` over ``{0..V-1}``, in lexicographic order.

    Row ``i`` is the base-``V`` expansion of ``i`` (most significant token first).
    Raises :class:`~synthetic.errors.EnumerationTooLargeError` when ``V^T > limit``.
    """
    size = V**T
    if size > limit:
        raise EnumerationTooLargeError(
            f"cannot enumerate V^T = {V}^{T} = {size} sequences (limit {limit}); lower V or T"
        )
    powers = V ** np.arange(T - 1, -1, -1, dtype=np.int64)
    return (np.arange(size, dtype=np.int64)[:, None] // powers[None, :]) % V


def check_sequences(seqs, V: int, T: int | None = None, name: str = "sequences") -> np.ndarray:
    """Validate an (m x t) integer array with tokens in ``0..V-1`` and ``t <= T``; return int64.

    Rows shorter than ``T`` are prefixes: models give their marginal probabilities.
    """
    x = np.asarray(seqs)
    if x.ndim != 2:
        raise ShapeMismatchError(f"{name} must be a 2-D array (m sequences x T tokens), got shape {x.shape}")
    if T is not None and x.shape[1] > T:
        raise ShapeMismatchError(f"{name} have length {x.shape[1]}, longer than T={T}")
    if x.size and not np.issubdtype(x.dtype, np.integer):
        raise InputError(f"{name} must hold integer tokens, got dtype {x.dtype}")
    x = x.astype(np.int64, copy=False)
    bad = (x < 0) | (x >= V)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputError(f"{name} row {row}, position {col}: token {x[row, col]} outside 0..{V - 1}")
    return x


def context_codes(flat: np.ndarray, pos: np.ndarray, V: int, r: int) -> np.ndarray:
    """Base-``(V+1)`` codes of the length-``r`` contexts preceding each token.

    ``flat`` is a 1-D token stream and ``pos`` the position of each token within its
    own sequence, so contexts never cross a sequence boundary (they are padded with
    ``BOS = V`` instead).
    """
    codes = np.zeros(flat.shape[0], dtype=np.int64)
    idx = np.arange(flat.shape[0])
    weight = 1
    for lag in range(1, r + 1):
        prev = np.where(pos >= lag, flat[np.maximum(idx - lag, 0)], V)
        codes += prev * weight
        weight *= V + 1
    return codes


def sequence_context_codes(seqs: np.ndarray, V: int, r: int) -> np.ndarray:
    """:func:`context_codes` for an (m x T) array; returns (m x T) codes."""
    m, T = seqs.shape
    pos = np.broadcast_to(np.arange(T), (m, T)).ravel()
    return context_codes(seqs.ravel(), pos, V, r).reshape(m, T)


def bos_code(V: int, r: int) -> int:
    """Code of the all-padding context (the start of every sequence)."""
    return (V + 1) ** r - 1


def sample_categorical(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw from each row of ``probs`` (m x V) by inversion of the row CDFs."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(probs.shape[0]) * cdf[:, -1]
    return np.minimum((cdf < u[:, None]).sum(axis=1), probs.shape[1] - 1)


class SequenceModel(ABC):
    """A distribution over sequences in ``{0..V-1}^T`` defined by the chain rule.

    Subclasses provide :meth:`token_log_probs` and :meth:`next_token_probs`;
    :meth:`log_prob` and :meth:`nll_per_token` follow from the first.
    """

    V: int
    T: int
    name: str

    @abstractmethod
    def token_log_probs(self, seqs) -> np.ndarray:
        """``log pi(x_t | x_<t)`` for every row and position of an (m x t) array, t <= T; float64."""

    @abstractmethod
    def next_token_probs(self, prefixes) -> np.ndarray:
        """``pi(. | x_<t)`` for each row of an (m x t) prefix array (t < T); (m x V)."""

    def log_prob(self, seqs) -> np.ndarray:
        """Exact ``log pi(x)`` of each sequence (nats), (m,) float64; a prefix gets its marginal."""
        return self.token_log_probs(seqs).sum(axis=1)

    def nll_per_token(self, seqs) -> float:
        """Average negative log-likelihood per token (nats) over the rows of ``seqs``."""
        return float(-self.token_log_probs(seqs).mean())


class SequenceDomain(SequenceModel):
    """A ground-truth sequence distribution: sampling and exact enumeration."""

    @abstractmethod
    def sample(self, m: int, seed: int) -> np.ndarray:
        """``m`` i.i.d. sequences (m x T int64), reproducible from ``seed``."""

    def enumerate(self, limit: int = MAX_ENUMERATION) -> tuple[np.ndarray, np.ndarray]:
        """All ``V^T`` outcomes (V^T x T) and their exact probabilities (summing to one)."""
        outcomes = all_sequences(self.V, self.T, limit)
        return outcomes, np.exp(self.log_prob(outcomes))


class MixtureModel(SequenceModel):
    """The sequence-level mixture ``sum_k w_k pi_k`` of sequence models with equal (V, T).

    A mixture of Markov chains is not itself a Markov chain: the next-token law is the
    posterior-weighted average ``sum_k w_k(x_<t) pi_k(. | x_<t)``, with
    ``w_k(x_<t)`` proportional to ``w_k pi_k(x_<t)``. With experts as components this
    is the Bayes-posterior gate of Branch-Train-Merge / DEMix, and :meth:`posterior`
    is the Bayes-optimal causal router.
    """

    def __init__(self, components, weights, name: str = "mixture"):
        comps = list(components)
        if not comps:
            raise InputError("a mixture needs at least one component")
        V, T = comps[0].V, comps[0].T
        for c in comps:
            if (c.V, c.T) != (V, T):
                raise ShapeMismatchError(
                    f"mixture component {c.name!r} has (V, T) = ({c.V}, {c.T}), expected ({V}, {T})"
                )
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(comps),) or (w < 0).any() or abs(w.sum() - 1) > 1e-9:
            raise InputError(f"mixture weights must be a probability vector of length {len(comps)}, got {w}")
        self.components, self.weights, self.V, self.T, self.name = comps, w, V, T, name

    def _log_weights(self) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.weights)

    def token_log_probs(self, seqs) -> np.ndarray:
        seqs = check_sequences(seqs, self.V, self.T)
        logw = self._log_weights()[:, None, None]
        cum = np.cumsum(np.stack([c.token_log_probs(seqs) for c in self.components]), axis=2)
        joint = logsumexp(logw + cum, axis=0)  # log pi(x_<=t)
        prev = np.concatenate([np.zeros((seqs.shape[0], 1)), joint[:, :-1]], axis=1)
        return joint - prev

    def posterior(self, prefixes) -> np.ndarray:
        """``P(k | x_<t)``, proportional to ``w_k pi_k(x_<t)``, for each prefix row; (m x p)."""
        prefixes = check_sequences(prefixes, self.V, self.T, "prefixes")
        logw = np.broadcast_to(self._log_weights()[:, None], (len(self.components), prefixes.shape[0]))
        if prefixes.shape[1]:
            logw = logw + np.stack([c.log_prob(prefixes) for c in self.components])
        return np.exp(logw - logsumexp(logw, axis=0, keepdims=True)).T

    def next_token_probs(self, prefixes) -> np.ndarray:
        post = self.posterior(prefixes)
        nxt = np.stack([c.next_token_probs(prefixes) for c in self.components])  # (p, m, V)
        return np.einsum("mp,pmv->mv", post, nxt)


class MixtureDomain(MixtureModel, SequenceDomain):
    """A mixture of domains: draw a component, then a whole sequence from it."""

    def sample_with_labels(self, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """``m`` sequences and the index of the component that generated each."""
        rng = np.random.default_rng(seed)
        labels = rng.choice(len(self.components), size=m, p=self.weights)
        seeds = rng.integers(0, 2**63 - 1, size=len(self.components))
        out = np.empty((m, self.T), dtype=np.int64)
        for k, comp in enumerate(self.components):
            rows = np.flatnonzero(labels == k)
            if rows.size:
                out[rows] = comp.sample(rows.size, int(seeds[k]))
        return out, labels

    def sample(self, m: int, seed: int) -> np.ndarray:
        return self.sample_with_labels(m, seed)[0]
