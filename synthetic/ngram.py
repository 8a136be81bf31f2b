"""Count-based n-gram models with add-k or interpolated Kneser-Ney smoothing.

An order-``n`` model predicts ``x_t`` from the ``n - 1`` previous tokens, padded with
``BOS`` at the start of each sequence, so the probabilities of all sequences of a
given length sum to one and every log-probability is exact for the model.

Counts are kept sparsely: each level ``j = 0..n-1`` (context length ``j``) stores the
sorted keys ``context_code * V + token`` that occur and their (weighted) counts, built
with ``np.unique`` and ``np.bincount``; look-ups use ``np.searchsorted``.

Smoothing
---------
``add-k``:
    ``p(w | c) = (N(c, w) + k) / (N(c) + k V)`` with the full context only.
``kneser-ney`` (interpolated, one absolute discount ``d`` for every order):
    ``p_j(w | c) = [max(N_j(c, w) - d, 0) + gamma_j(c) p_{j-1}(w | c')] / N_j(c)``,
    where ``c'`` drops the oldest token of ``c``, ``gamma_j(c) = sum_w min(N_j(c, w), d)``
    (equal to ``d`` times the number of distinct successors for integer counts, and
    exactly normalising for fractional weighted counts too), ``p_{-1}`` is uniform,
    and a context never seen falls back to ``p_{j-1}``. ``N_j`` is the raw count at the
    highest order and the continuation count (the number of distinct one-token-longer
    left extensions) at lower orders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthetic.provenance import data_checksum
from synthetic.sequences import SequenceModel, check_sequences, context_codes
from theory.errors import InputError, InvalidOptionError

SMOOTHINGS = ("add-k", "kneser-ney")
#: Key spaces below this size are counted with a dense ``np.bincount``.
DENSE_KEYS = 2**22


@dataclass
class _Level:
    """Sparse counts of one context length: sorted keys ``ctx * V + w`` and context totals."""

    keys: np.ndarray
    counts: np.ndarray
    contexts: np.ndarray
    totals: np.ndarray
    leftover: np.ndarray  # sum_w min(N(c, w), d): the mass handed to the lower order

    @classmethod
    def from_keys(cls, keys, weights, V: int, discount: float) -> "_Level":
        if keys.size and keys.max() < DENSE_KEYS:
            # Small key spaces: one dense bincount is O(N) instead of an O(N log N) sort.
            dense = np.bincount(keys, weights=weights)
            uniq = np.flatnonzero(dense > 0)
            counts = dense[uniq]
        else:
            uniq, inverse = np.unique(keys, return_inverse=True)
            counts = np.bincount(inverse, weights=weights, minlength=uniq.size)
            keep = counts > 0
            uniq, counts = uniq[keep], counts[keep]
        contexts, cinv = np.unique(uniq // V, return_inverse=True)
        totals = np.bincount(cinv, weights=counts, minlength=contexts.size)
        leftover = np.bincount(cinv, weights=np.minimum(counts, discount), minlength=contexts.size)
        return cls(uniq, counts, contexts, totals, leftover)

    @staticmethod
    def _lookup(table: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
        if table.size == 0:
            return np.zeros(query.shape)
        i = np.minimum(np.searchsorted(table, query), table.size - 1)
        return np.where(table[i] == query, values[i], 0.0)

    def count(self, keys) -> np.ndarray:
        return self._lookup(self.keys, self.counts, keys)

    def context_stats(self, ctx) -> tuple[np.ndarray, np.ndarray]:
        return self._lookup(self.contexts, self.totals, ctx), self._lookup(self.contexts, self.leftover, ctx)


def _flatten(data, V: int, T: int | None):
    """A 2-D array or a list of 1-D documents -> (flat tokens, position in document, lengths)."""
    if isinstance(data, (list, tuple)):
        docs = [np.asarray(d) for d in data]
        for i, d in enumerate(docs):
            if d.ndim != 1:
                raise InputError(f"document {i} must be a 1-D token array, got shape {d.shape}")
        lengths = np.array([d.size for d in docs], dtype=np.int64)
        flat = np.concatenate(docs).astype(np.int64) if docs else np.zeros(0, dtype=np.int64)
        check_sequences(flat[None, :], V, None, "documents")
    else:
        seqs = check_sequences(data, V, T)
        lengths = np.full(seqs.shape[0], seqs.shape[1], dtype=np.int64)
        flat = seqs.ravel()
    starts = np.cumsum(lengths) - lengths
    pos = np.arange(flat.size) - np.repeat(starts, lengths)
    return flat, pos, lengths


class NGramModel(SequenceModel):
    """Order-``n`` n-gram model over ``{0..V-1}`` (see the module docstring for smoothing).

    Parameters
    ----------
    V : int
        Vocabulary size.
    order : int
        ``n``: the model conditions on the ``n - 1`` previous tokens.
    T : int or None
        Sequence length of the distribution it defines (None: any length).
    smoothing : {"kneser-ney", "add-k"}
    k : float
        Pseudo-count of add-k smoothing.
    discount : float
        Absolute discount ``d`` of Kneser-Ney, in (0, 1].
    """

    def __init__(self, V: int, order: int, T: int | None = None, *, smoothing: str = "kneser-ney",
                 k: float = 1.0, discount: float = 0.75, name: str | None = None):
        if smoothing not in SMOOTHINGS:
            raise InvalidOptionError(f"unknown smoothing {smoothing!r}; use one of {SMOOTHINGS}")
        if V < 2 or order < 1:
            raise InputError(f"n-gram model needs V >= 2 and order >= 1, got V={V}, order={order}")
        if float(V + 1) ** (order - 1) * V >= 2.0**62:
            raise InputError(f"context codes of order {order} over V={V} overflow int64; lower the order")
        if smoothing == "add-k" and not k > 0:
            raise InputError(f"add-k pseudo-count must be positive, got k={k}")
        if smoothing == "kneser-ney" and not 0 < discount <= 1:
            raise InputError(f"Kneser-Ney discount must lie in (0, 1], got {discount}")
        self.V, self.order, self.T = V, order, T
        self.smoothing, self.k, self.discount = smoothing, float(k), float(discount)
        self.name = name or f"{order}-gram/{smoothing}"
        self.levels: list[_Level] | None = None
        self.data_checksum: str | None = None
        self.n_tokens = 0.0

    def fit(self, data, weights=None) -> "NGramModel":
        """Count n-grams of ``data`` (m x T array or list of 1-D documents).

        ``weights`` (one per sequence or document, non-negative) scale its counts: the
        model fitted to weighted data is the model of the weighted aggregate.
        """
        flat, pos, lengths = _flatten(data, self.V, self.T)
        if weights is None:
            tok_w = np.ones(flat.size)
        else:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != lengths.shape or not np.isfinite(w).all() or (w < 0).any():
                raise InputError(f"weights must be {lengths.size} finite non-negative numbers, one per sequence")
            tok_w = np.repeat(w, lengths)
        if tok_w.sum() <= 0:
            raise InputError("n-gram model fitted on no data (no tokens or all weights zero)")
        r = self.order - 1
        top_codes = context_codes(flat, pos, self.V, r)
        d = self.discount if self.smoothing == "kneser-ney" else 1.0
        top = _Level.from_keys(top_codes * self.V + flat, tok_w, self.V, d)
        levels = [top]
        if self.smoothing == "kneser-ney":
            for j in range(r - 1, -1, -1):
                above = levels[0]
                # Continuation counts: each distinct left extension counts once.
                shorter = (above.keys // self.V) % (self.V + 1) ** j * self.V + above.keys % self.V
                levels.insert(0, _Level.from_keys(shorter, np.ones(shorter.size), self.V, d))
        self.levels = levels
        self.data_checksum = data_checksum(flat, lengths, None if weights is None else tok_w)
        self.n_tokens = float(tok_w.sum())
        return self

    def _require_fit(self):
        if self.levels is None:
            raise InputError(f"n-gram model {self.name!r} is not fitted; call fit() first")

    def prob(self, codes: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """``p(token | context)`` for full context codes (length ``n - 1``) and tokens."""
        self._require_fit()
        V = self.V
        if self.smoothing == "add-k":
            top = self.levels[0]
            total = top.context_stats(codes)[0]
            return (top.count(codes * V + tokens) + self.k) / (total + self.k * V)
        p = np.full(codes.shape, 1.0 / V)
        for j, level in enumerate(self.levels):
            ctx = codes % (V + 1) ** j
            total, leftover = level.context_stats(ctx)
            c = level.count(ctx * V + tokens)
            seen = total > 0
            p = np.where(seen, (np.maximum(c - self.discount, 0.0) + leftover * p) / np.where(seen, total, 1.0), p)
        return p

    def flat_log_probs(self, data) -> np.ndarray:
        """``log p(x_t | x_<t)`` of every token of an (m x T) array or a list of documents, flat."""
        flat, pos, _ = _flatten(data, self.V, self.T)
        return np.log(self.prob(context_codes(flat, pos, self.V, self.order - 1), flat))

    def token_log_probs(self, seqs) -> np.ndarray:
        seqs = check_sequences(seqs, self.V, self.T)
        return self.flat_log_probs(seqs).reshape(seqs.shape)

    def next_token_probs(self, prefixes) -> np.ndarray:
        prefixes = np.asarray(prefixes, dtype=np.int64)
        m, t = prefixes.shape
        full = np.concatenate([prefixes, np.zeros((m, 1), dtype=np.int64)], axis=1)
        flat, pos, _ = _flatten(full, self.V, None)
        codes = context_codes(flat, pos, self.V, self.order - 1).reshape(m, t + 1)[:, t]
        tokens = np.arange(self.V)
        return self.prob(np.repeat(codes, self.V), np.tile(tokens, m)).reshape(m, self.V)
