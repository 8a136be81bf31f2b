"""Regenerate ``dual_references.npz``: cvxpy/Clarabel robust solutions used by test_dual.py.

Run from the repository root: ``python -m tests.theory.data.make_dual_references``.
Each case stores the instance (D, P, cells, prior bounds and polytope), the value of
:func:`theory.cvx.solve_cvxpy` (KLs recomputed in numpy at Clarabel's q) and its lam*
(the epigraph duals).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from theory.cvx import solve_cvxpy
from theory.prior import PriorSet

OUT = Path(__file__).with_name("dual_references.npz")
SEED = 20261129


def cases():
    """(name, D, P, family, cells, prior) for the stored references."""
    rng = np.random.default_rng(SEED)
    out = []
    for name, p, n, family, prior_kind in [
        ("full_p3", 3, 120, "full", None),
        ("full_p6", 6, 200, "full", None),
        ("full_box", 4, 150, "full", "box"),
        ("full_polytope", 4, 150, "full", "polytope"),
        ("constant_p4", 4, 150, "constant", None),
        ("partition_p4", 4, 150, "partition", None),
        ("partition_box", 3, 100, "partition", "box"),
    ]:
        D = rng.dirichlet(np.ones(n), size=p)
        P = 0.6 * D + 0.4 * rng.dirichlet(np.ones(n), size=p)
        cells = rng.integers(0, 6, size=n) if family == "partition" else np.zeros(0, dtype=int)
        if prior_kind == "box":
            prior = PriorSet(p, lower=np.full(p, 0.1), upper=np.full(p, 0.4))
        elif prior_kind == "polytope":
            # lam_0 + lam_1 <= 0.3 and lam_2 >= 0.2 (as -lam_2 <= -0.2).
            A = np.zeros((2, p))
            A[0, :2] = 1.0
            A[1, 2] = -1.0
            prior = PriorSet(p, A=A, b=np.array([0.3, -0.2]))
        else:
            prior = None
        out.append((name, D, P, family, cells, prior))
    return out


def prior_arrays(prior, p):
    if prior is None:
        return np.zeros(p), np.ones(p), np.zeros((0, p)), np.zeros(0)
    lo, hi = prior.bounds()
    A = prior.A if prior.A is not None else np.zeros((0, p))
    b = prior.b if prior.b is not None else np.zeros(0)
    return lo, hi, A, b


def as_prior(lo, hi, A, b):
    p = lo.shape[0]
    if A.shape[0] == 0 and not (lo > 0).any() and not (hi < 1).any():
        return None
    return PriorSet(p, lower=lo, upper=hi, A=A if A.shape[0] else None, b=b if A.shape[0] else None)


def build() -> dict[str, np.ndarray]:
    arrays = {}
    for name, D, P, family, cells, prior in cases():
        res = solve_cvxpy(D, P, family=family, cells=cells if cells.size else None, prior=prior)
        value, lam = res.value, res.lam
        lo, hi, A, b = prior_arrays(prior, D.shape[0])
        for key, arr in dict(D=D, P=P, cells=cells, lo=lo, hi=hi, A=A, b=b, value=value, lam=lam).items():
            arrays[f"{name}/{key}"] = np.asarray(arr)
        arrays[f"{name}/family"] = np.asarray(family)
    return arrays


if __name__ == "__main__":
    np.savez_compressed(OUT, **build())
    print(f"wrote {OUT}")
