"""The gate space G1 on a finite outcome space, and restricted gate families.

A gate is an (n x p) array whose rows lie in the simplex; the gated model is
``pi_g(x) = sum_k g(x, k) pi_k(x)`` and G1 asks for total mass ``Z_g = 1``. Over G1
the gated model can be any ``q`` in the pointwise hull ``l <= q <= u`` with
``sum q = 1``, where ``l = min_k pi_k`` and ``u = max_k pi_k``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory.errors import EmptyGateSpaceError, InvalidDistributionError, ShapeMismatchError

#: Absolute tolerance for membership tests (row sums, total mass, hull bounds).
MEMBERSHIP_TOL = 1e-9
#: Outcomes per block in :func:`gate_from_q` (temporaries of O(block p) stay in cache).
_CHUNK = 1 << 14


def pointwise_hull(P) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(l, u)`` with ``l(x) = min_k pi_k(x)`` and ``u(x) = max_k pi_k(x)``."""
    P = np.asarray(P, dtype=np.float64)
    return P.min(axis=0), P.max(axis=0)


def gated_model(gate, P) -> np.ndarray:
    """The (unnormalised) gated model ``pi_g(x) = sum_k g(x, k) pi_k(x)``."""
    return np.einsum("nk,kn->n", np.asarray(gate, dtype=np.float64), np.asarray(P, dtype=np.float64))


def gate_mass(gate, P) -> float:
    """Total mass ``Z_g = sum_x sum_k g(x, k) pi_k(x)``."""
    return float(gated_model(gate, P).sum())


def in_G1(gate, P, tol: float = MEMBERSHIP_TOL) -> bool:
    """Whether ``gate`` has rows in the simplex and gives a model of total mass one."""
    P = np.asarray(P, dtype=np.float64)
    g = np.asarray(gate, dtype=np.float64)
    if g.shape != (P.shape[1], P.shape[0]) or (g < -tol).any():
        return False
    if np.abs(g.sum(axis=1) - 1).max() > tol:
        return False
    return abs(gate_mass(g, P) - 1.0) <= tol


def require_nonempty_G1(P, support=None) -> None:
    """Raise :class:`EmptyGateSpaceError` if no gate on ``support`` reaches mass one.

    With ``support`` (a boolean mask of outcomes) the gate may only place mass there,
    as in the paper's Lemma 1: when every expert leaks mass outside the support,
    ``sum_{x in support} max_k pi_k(x) < 1`` and G1 is empty. The remedy is to
    renormalise the experts on the support (:func:`renormalise_on_support`) or to
    define the gate on the experts' whole outcome space.
    """
    P = np.asarray(P, dtype=np.float64)
    lo, hi = pointwise_hull(P)
    if support is not None:
        mask = np.asarray(support, dtype=bool)
        lo, hi = lo[mask], hi[mask]
    if hi.sum() < 1 - MEMBERSHIP_TOL:
        where = "on the support of the data" if support is not None else ""
        raise EmptyGateSpaceError(
            f"G1 is empty {where}: the largest reachable mass is sum_x max_k pi_k(x) = "
            f"{hi.sum():.6g} < 1. Remedy: renormalise the experts on the support "
            "(theory.gates.renormalise_on_support) or define the gate on the experts' whole "
            "outcome space"
        )
    if lo.sum() > 1 + MEMBERSHIP_TOL:
        raise EmptyGateSpaceError(
            f"G1 is empty: the smallest reachable mass is sum_x min_k pi_k(x) = {lo.sum():.6g} > 1"
        )


def renormalise_on_support(P, support) -> np.ndarray:
    """Experts restricted to ``support`` and renormalised there (rows sum to one)."""
    P = np.asarray(P, dtype=np.float64)
    mask = np.asarray(support, dtype=bool)
    out = np.where(mask[None, :], P, 0.0)
    mass = out.sum(axis=1, keepdims=True)
    if (mass <= 0).any():
        row = int(np.flatnonzero(mass[:, 0] <= 0)[0])
        raise EmptyGateSpaceError(f"expert {row} puts no mass on the support: it cannot be renormalised")
    return out / mass


@dataclass(frozen=True)
class CompactGate:
    """A gate of G1 stored as two experts and one weight per outcome.

    ``g(x, k_high[x]) += weight[x]`` and ``g(x, k_low[x]) += 1 - weight[x]``: the models
    of the pointwise hull are realised by mixing the arg-min and the arg-max expert of
    each outcome, so 2 small ints and 1 float per outcome replace the ``p`` floats of a
    dense row (:meth:`dense` builds those on request).
    """

    k_low: np.ndarray
    k_high: np.ndarray
    weight: np.ndarray
    p: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.weight.shape[0], self.p)

    def dense(self) -> np.ndarray:
        """The (n x p) gate."""
        n = self.weight.shape[0]
        gate = np.zeros((n, self.p))
        rows = np.arange(n)
        gate[rows, self.k_low] = 1.0 - self.weight
        gate[rows, self.k_high] += self.weight
        return gate


def compact_gate_from_q(q, P) -> CompactGate:
    """A gate in G1 realising any ``q`` of the pointwise hull, in compact form.

    Finds ``g`` with rows in the simplex and ``sum_k g(x, k) pi_k(x) = q(x)`` for
    ``l <= q <= u``: weight ``t = (q - l) / (u - l)`` goes to the arg-max expert and
    ``1 - t`` to the arg-min expert (the first one on ties); where ``u = l`` all weight
    goes to the arg-min expert. ``t`` is clipped to ``[0, 1]``, so a ``q`` slightly
    outside the hull gets the nearest realisable gate.

    Works over blocks of outcomes (any float dtype, memory-mapped arrays included):
    arg-min/arg-max along the short axis of a (p x n) array are several times slower in
    numpy than ``p`` comparisons of rows with the block's minimum and maximum, and
    blocks keep the temporaries in cache.
    """
    q = np.asarray(q, dtype=np.float64)
    if not isinstance(P, np.ndarray):
        P = np.asarray(P, dtype=np.float64)
    p, n = P.shape
    index = np.min_scalar_type(max(p - 1, 0))
    k_low = np.empty(n, dtype=index)
    k_high = np.empty(n, dtype=index)
    weight = np.zeros(n)
    for a in range(0, n, _CHUNK):
        block = np.asarray(P[:, a : a + _CHUNK], dtype=np.float64)
        m = block.shape[1]
        imin, imax = k_low[a : a + m], k_high[a : a + m]
        lo, hi = block.min(axis=0), block.max(axis=0)
        # Downwards, so that the first expert attaining the extreme is the one kept.
        for k in range(p - 1, -1, -1):
            np.copyto(imin, k, where=block[k] == lo)
            np.copyto(imax, k, where=block[k] == hi)
        width = hi - lo
        t = weight[a : a + m]
        np.divide(q[a : a + m] - lo, width, out=t, where=width > 0)
        np.clip(t, 0.0, 1.0, out=t)
    return CompactGate(k_low=k_low, k_high=k_high, weight=weight, p=p)


def gate_from_q(q, P) -> np.ndarray:
    """The dense (n x p) form of :func:`compact_gate_from_q`."""
    return compact_gate_from_q(q, P).dense()


def constant_gate(weights, n: int) -> np.ndarray:
    """The static gate ``g(x, .) = weights`` for every outcome (always in G1)."""
    w = np.asarray(weights, dtype=np.float64)
    return np.broadcast_to(w, (n, w.shape[0])).copy()


def partition_gate(cell_weights, cells) -> np.ndarray:
    """Gate constant on the cells of a partition: ``g(x, .) = cell_weights[cells[x]]``.

    ``cells`` is an integer array of length n with values in ``0..C-1``;
    ``cell_weights`` is (C x p) with rows in the simplex.
    """
    W = np.asarray(cell_weights, dtype=np.float64)
    return W[np.asarray(cells, dtype=np.intp)].copy()


def check_cells(cells, n: int) -> tuple[np.ndarray, int]:
    """Validate a partition of ``n`` outcomes; return (cells as intp, number of cells).

    Cell labels are relabelled to ``0..C-1`` in order of first appearance of each label.
    """
    c = np.asarray(cells)
    if c.shape != (n,):
        raise ShapeMismatchError(f"partition must assign a cell to each of the n={n} outcomes, got shape {c.shape}")
    if not np.issubdtype(c.dtype, np.integer):
        if not np.all(np.isfinite(c)) or not np.all(c == np.round(c)):
            bad = int(np.flatnonzero(~np.isfinite(c) | (c != np.round(c)))[0])
            raise InvalidDistributionError(f"partition label of outcome {bad} is {c[bad]!r}, not an integer")
    _, labels = np.unique(c, return_inverse=True)
    return labels.astype(np.intp), int(labels.max()) + 1
