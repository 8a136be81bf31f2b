"""Regenerate the stored cvxpy/Clarabel reference solutions: ``python -m tests.theory.make_fixtures``.

Each case is an instance too slow to solve by cvxpy in every test run; the fast solvers
are compared against the stored ``value`` and ``lam``.
"""

from pathlib import Path

import numpy as np

from tests.theory.instances import make_instance
from theory.cvx import solve_cvxpy
from theory.prior import PriorSet

PATH = Path(__file__).with_name("data") / "cvxpy_reference.npz"

#: name -> (kind, n, p, seed, family, number of cells or 0, (lower bound, upper bound) or None)
CASES = {
    "overlapping_full": ("overlapping", 3000, 5, 11, "full", 0, None),
    "disjoint_full": ("disjoint", 2000, 4, 12, "full", 0, None),
    "overlapping_box_prior": ("overlapping", 2000, 4, 13, "full", 0, (0.1, 0.4)),
    "overlapping_constant": ("overlapping", 1000, 4, 14, "constant", 0, None),
    "overlapping_partition": ("overlapping", 600, 3, 15, "partition", 8, None),
}


def build(name):
    """The instance of a case: (D, P, family, cells or None, PriorSet or None)."""
    kind, n, p, seed, family, n_cells, bounds = CASES[name]
    D, P = make_instance(kind, n, p, seed)
    cells = np.random.default_rng(seed).integers(0, n_cells, n) if n_cells else None
    prior = PriorSet(p, lower=np.full(p, bounds[0]), upper=np.full(p, bounds[1])) if bounds else None
    return D, P, family, cells, prior


def main():
    arrays = {}
    for name in CASES:
        D, P, family, cells, prior = build(name)
        res = solve_cvxpy(D, P, family=family, cells=cells, prior=prior)
        arrays[f"{name}/value"] = res.value
        arrays[f"{name}/gap"] = res.gap
        arrays[f"{name}/lam"] = res.lam
        print(f"{name}: value {res.value:.12f}, gap {res.gap:.2e}, status {res.status}, {res.seconds:.1f} s")
    PATH.parent.mkdir(exist_ok=True)
    np.savez(PATH, **arrays)


if __name__ == "__main__":
    main()
