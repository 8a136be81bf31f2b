"""Random finite instances (domains D, experts P) of the kinds the solvers must all handle."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

#: overlapping: Dirichlet rows; disjoint: domains on disjoint supports, experts covering
#: everything; identical: all experts equal; near-degenerate: entries down to 1e-12 and two
#: experts equal up to 1e-9.
KINDS = ("overlapping", "disjoint", "identical", "near-degenerate")


def make_instance(kind: str, n: int, p: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A (D, P) pair of shape (p, n) of the given kind, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    if kind == "disjoint":
        labels = np.arange(n) % p
        D = np.where(labels[None, :] == np.arange(p)[:, None], rng.uniform(0.5, 1.5, (p, n)), 0.0)
        P = 0.7 * D / D.sum(axis=1, keepdims=True) + 0.3 * rng.dirichlet(np.ones(n), size=p)
    else:
        D = rng.dirichlet(np.full(n, 0.7), size=p)
        P = rng.dirichlet(np.full(n, 0.7), size=p)
        if kind == "identical":
            P = np.repeat(P[:1], p, axis=0)
        elif kind == "near-degenerate":
            D = np.maximum(D, 0) + np.where(rng.random((p, n)) < 0.2, 1e-12, 0.0)
            P = P + 1e-12
            if p > 1:
                P[1] = P[0] + 1e-9 * rng.random(n)
    D = D / D.sum(axis=1, keepdims=True)
    P = P / P.sum(axis=1, keepdims=True)
    return D, P


@st.composite
def instances(draw, n_max: int = 40, p_max: int = 4, kinds=KINDS):
    """Hypothesis strategy: (kind, D, P)."""
    kind = draw(st.sampled_from(kinds))
    p = draw(st.integers(2, p_max))
    n = draw(st.integers(max(p, 2), n_max))
    seed = draw(st.integers(0, 2**32 - 1))
    D, P = make_instance(kind, n, p, seed)
    return kind, D, P
