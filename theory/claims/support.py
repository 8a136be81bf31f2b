"""Lemma 1: is G1 non-empty? The gate defined only on the data support versus on all outcomes."""

from __future__ import annotations

import numpy as np

from theory.claims.record import CONSISTENCY, EQUAL, IDENTITY, LOWER, Check
from theory.errors import EmptyGateSpaceError
from theory.gates import MEMBERSHIP_TOL, pointwise_hull, renormalise_on_support, require_nonempty_G1

#: The paper's counterexample: one expert, data on {a}, the expert gives a 0.9 and b 0.1.
COUNTEREXAMPLE_D = np.array([[1.0, 0.0]])
COUNTEREXAMPLE_P = np.array([[0.9, 0.1]])


def _detects_empty(P, support) -> bool:
    try:
        require_nonempty_G1(P, support=support)
    except EmptyGateSpaceError:
        return True
    return False


def check_lemma1(D, P) -> list[Check]:
    """Lemma 1: G1 is non-empty, i.e. some gate reaches mass ``Z_g = 1``.

    With the gate defined only on the support S of the data, the largest reachable mass
    is ``sum_{x in S} max_k pi_k(x)``, below one as soon as every expert leaks mass
    outside S. The remedies: define the gate on the experts' whole outcome space
    (reachable mass ``sum_x max_k pi_k(x) >= 1`` always), or renormalise the experts
    on S. The suite's detector (:func:`theory.gates.require_nonempty_G1`) must agree.
    The assumption recorded: experts put no mass outside S. Under it, and for both
    remedies, ``sum_x max_k pi_k(x) >= sum_x pi_1(x) = 1``: identities; the detector's
    agreement is a consistency check of the code. The claim's content is where it fails.
    """
    D = np.asarray(D, dtype=np.float64)
    P = np.asarray(P, dtype=np.float64)
    support = D.sum(axis=0) > 0
    _, hi = pointwise_hull(P)
    on_support = float(hi[support].sum())
    renorm = float(pointwise_hull(renormalise_on_support(P, support))[1][support].sum())
    normalised = bool(not (P[:, ~support] > 0).any())
    q = {"support": support.astype(int), "mass_on_support": on_support, "mass_everywhere": float(hi.sum()),
         "mass_renormalised": renorm}
    empty = on_support < 1 - MEMBERSHIP_TOL
    return [
        Check("G1 with the gate on the data support is non-empty", LOWER, 1.0, on_support, MEMBERSHIP_TOL, q,
              normalised),
        Check("G1 with the gate on all outcomes is non-empty", LOWER, 1.0, float(hi.sum()), MEMBERSHIP_TOL, q,
              role=IDENTITY),
        Check("G1 after renormalising experts on the support is non-empty", LOWER, 1.0, renorm, MEMBERSHIP_TOL, q,
              role=IDENTITY),
        Check("require_nonempty_G1 detects the empty case", EQUAL, float(empty),
              float(_detects_empty(P, support)), 0.0, q, role=CONSISTENCY),
    ]


def leaky_support_instance(p: int, n: int, leak: float, rng, *, renormalise: bool = False):
    """Data on a random subset S of the outcomes; experts that put mass ``leak`` outside S."""
    size = int(rng.integers(1, n))
    support = np.zeros(n, dtype=bool)
    support[rng.choice(n, size=size, replace=False)] = True
    D = np.where(support, rng.gamma(1.0, size=(p, n)) + 1e-3, 0.0)
    D /= D.sum(axis=1, keepdims=True)
    inside = np.where(support, rng.gamma(1.0, size=(p, n)) + 1e-3, 0.0)
    outside = np.where(support, 0.0, rng.gamma(1.0, size=(p, n)) + 1e-3)
    P = (1 - leak) * inside / inside.sum(axis=1, keepdims=True) + leak * outside / outside.sum(axis=1, keepdims=True)
    if renormalise:
        P = renormalise_on_support(P, support)
    return D, P
