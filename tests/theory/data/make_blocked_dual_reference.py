"""Regenerate ``blocked_dual_reference.npz``: the full-family dual's results on instances of several blocks.

Run from the repository root: ``python -m tests.theory.data.make_blocked_dual_reference``.
Written with the solver of commit c336176 (before the issue-14 kernel tuning) and kept
as the reference that later changes to the passes (block sizes, fused reductions) must
reproduce to 1e-10: ``value``, ``lam``, ``kl`` and the model ``q`` (every 10th
outcome). The instances are drawn from their seeds (the benchmark's generator,
:func:`instance`); ``D_sum``/``P_sum`` detect a changed random stream.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from theory.dual import solve_dual

OUT = Path(__file__).with_name("blocked_dual_reference.npz")
#: (name, n, p, seed, q stride): several blocks of outcomes each (blocks of 8192 to 32768 columns).
CASES = [("p8", 100_000, 8, 81, 10), ("p2", 70_000, 2, 21, 10)]


def instance(n: int, p: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Domains ``D_k ~ Dirichlet(1)`` and experts ``P_k`` proportional to ``D_k exp(0.5 z)``, ``z ~ N(0, 1)``."""
    rng = np.random.default_rng(seed)
    D = rng.standard_exponential((p, n))
    D /= D.sum(axis=1, keepdims=True)
    P = D * np.exp(0.5 * rng.standard_normal((p, n)))
    P /= P.sum(axis=1, keepdims=True)
    return D, P


def build() -> dict[str, np.ndarray]:
    arrays = {}
    for name, n, p, seed, stride in CASES:
        D, P = instance(n, p, seed)
        res = solve_dual(D, P, tol=1e-10)
        for key, arr in dict(value=res.value, lam=res.lam, kl=res.kl, q=res.q[::stride], stride=stride,
                             D_sum=(D * np.arange(1, n + 1)).sum(), P_sum=(P * np.arange(1, n + 1)).sum()).items():
            arrays[f"{name}/{key}"] = np.asarray(arr)
    return arrays


if __name__ == "__main__":
    np.savez_compressed(OUT, **build())
    print(f"wrote {OUT}")
