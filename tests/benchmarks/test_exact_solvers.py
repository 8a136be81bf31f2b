"""The exact-solver benchmarks' own machinery: pass counting and the mapped-file instance."""

import numpy as np

from benchmarks.exact_solvers import _PassCounter, instance
from benchmarks.exact_solvers_large import child, write_instance
from theory.dual import solve_dual


def test_pass_counter_counts_the_fused_solve(monkeypatch):
    import theory.dual as dual

    D, P = instance(50_000, 4, seed=1)
    with _PassCounter() as counter:
        res = solve_dual(D, P, tol=1e-9)
    evaluations = res.info["evaluations"]
    # Validation reads D and P (the first evaluation's moments ride along); one pass over D per later evaluation.
    assert counter.data_passes(50_000) == 2 + (evaluations - 1)
    # The level's later passes read only the outcomes listed near it (theory.dual._Window) ...
    assert counter.level == 0
    # ... and without the window they read the n-vectors, which the counter sees.
    monkeypatch.setattr(dual, "_WINDOW", 1e-300)
    with _PassCounter() as full:
        solve_dual(D, P, tol=1e-9)
    assert full.level >= evaluations - 1
    with _PassCounter() as again:
        pass
    assert again.data_passes(50_000) == 0


def test_mapped_instance_solves_like_the_arrays(tmp_path):
    d_path, p_path = write_instance(tmp_path, 20_000, 3, "float64", seed=2)
    D, P = np.load(d_path), np.load(p_path)
    np.testing.assert_allclose(D.sum(axis=1), 1.0, atol=1e-12)
    row = child(str(d_path), str(p_path))
    assert row["status"] == "optimal"
    assert abs(row["value"] - solve_dual(D, P).value) < 1e-12
    assert row["peak_rss_mb"] > 0
