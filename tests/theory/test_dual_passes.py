"""The dual solver's passes over the data: fused moments, corrections, lazy Hessians, blocks, mapped files."""

import json
from pathlib import Path

import numpy as np
import pytest

import tests.theory.data.make_blocked_dual_reference as reference_cases
import theory.cli as cli
from theory.blocks import block, buffer
from theory.dual import LARGE_P, _FullFamily, solve_dual
from theory.simplex import WaterLevel
from theory.validation import scan_instance


def _instance(n, p, seed, spread=1.0):
    rng = np.random.default_rng(seed)
    D = rng.dirichlet(np.ones(n), size=p)
    P = D * np.exp(spread * rng.standard_normal((p, n)))
    P /= P.sum(axis=1, keepdims=True)
    return D, P


def _dense_moments(D, P, lam):
    """KL(D_k || q*), the Hessian of phi at lam, from the whole arrays (no blocks)."""
    lo, hi = P.min(axis=0), P.max(axis=0)
    from theory.simplex import water_fill

    v = lam @ D
    q, _ = water_fill(v, lo, hi)
    free = (q > lo) & (q < hi) & (v > 0)
    kl = (D * np.log(np.maximum(D, 1e-300) / q)).sum(axis=1)
    DF = D[:, free]
    gram = (DF / v[free]) @ DF.T
    s = DF.sum(axis=1)
    return kl, -(gram - np.outer(s, s) / float(lam @ s))


@pytest.mark.parametrize("p", [3, LARGE_P])
def test_point_moments_match_the_whole_array_formulas(p):
    # p = LARGE_P: the Hessian is built on request by its own pass (rank-k updates).
    D, P = _instance(3000, p, seed=p)
    oracle = _FullFamily.of_experts(D, P)
    rng = np.random.default_rng(1)
    for lam in (np.full(p, 1.0 / p), rng.dirichlet(np.ones(p)), rng.dirichlet(np.ones(p))):
        point = oracle(lam)
        kl, hessian = _dense_moments(D, P, lam)
        np.testing.assert_allclose(point.kl, kl, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(point.hessian, hessian, rtol=1e-9, atol=1e-9 * np.abs(hessian).max())
        if p >= LARGE_P:
            assert np.array_equal(point.hessian, point.hessian.T)  # mirrored from the rank-k updates' triangle


def test_corrected_moments_equal_a_fresh_pass_when_outcomes_change_clipping():
    D, P = _instance(20_000, 4, seed=7, spread=0.3)
    oracle = _FullFamily.of_experts(D, P)
    lam = np.array([0.1, 0.2, 0.3, 0.4])
    v = oracle.v
    t_ref = 0.98
    oracle._sweep(v, lam=lam, t=t_ref, moments=True)
    oracle.v_lam = lam.copy()
    t = 1.03
    oracle._tracked_pass(v, t)
    changed = oracle.changes[t]
    assert changed is not None and changed.size > 0  # the correction is exercised
    level = WaterLevel("level", 1.0 / t, t=t)
    uncorrected = oracle.ref[1:]
    corrected = oracle._corrected(v, level)
    oracle._sweep(v, t=t, moments=True)
    fresh = oracle.ref[1:]
    np.testing.assert_allclose(corrected[0], fresh[0], rtol=1e-12, atol=1e-15)
    assert np.array_equal(corrected[1], fresh[1])
    kl = lambda moments: oracle._finish(*moments, level)[0]  # noqa: E731
    assert np.abs(kl(corrected) - kl(fresh)).max() < 1e-12
    # The reference pattern's moments alone are wrong at t: the correction matters.
    assert np.abs(kl(uncorrected) - kl(fresh)).max() > 1e-9


def test_too_many_changes_fall_back_to_a_fresh_pass():
    D, P = _instance(5000, 3, seed=2)
    oracle = _FullFamily.of_experts(D, P)
    lam = np.full(3, 1 / 3)
    oracle._sweep(oracle.v, lam=lam, t=0.5, moments=True)
    oracle._tracked_pass(oracle.v, 2.0)
    assert oracle.changes[2.0] is None
    assert oracle._corrected(oracle.v, WaterLevel("level", 0.5, t=2.0)) is None


def test_solve_agrees_with_and_without_the_fused_first_pass():
    D, P = _instance(40_000, 5, seed=3)
    fused = solve_dual(D, P, tol=1e-10)
    # A prior set for another p cannot be fused with the scan; the same problem through PriorSet(p) can.
    from theory.prior import PriorSet

    again = solve_dual(D, P, prior=PriorSet(5), tol=1e-10)
    assert fused.status == again.status == "optimal"
    assert abs(fused.value - again.value) < 1e-12


def test_block_copies_are_contiguous_float64():
    X = np.arange(24, dtype=np.float32).reshape(3, 8) / 7
    buf = buffer(3, 8, 5)
    got = block(X, 5, 8, buf)
    assert got.flags.c_contiguous and got.dtype == np.float64 and got.shape == (3, 3)
    np.testing.assert_array_equal(got, X[:, 5:8].astype(np.float64))


def test_scan_rides_each_block():
    D, P = _instance(70_000, 2, seed=4)
    seen = []
    scan = scan_instance(D, P, mix=np.array([0.25, 0.75]), each=lambda a, b, Dc, v, lo, hi: seen.append((a, b)))
    assert seen[0][0] == 0 and seen[-1][1] == 70_000
    assert all(b == a2 for (_, b), (a2, _) in zip(seen, seen[1:]))
    np.testing.assert_allclose(scan.v, np.array([0.25, 0.75]) @ D, rtol=1e-13)


def test_cli_dual_reads_memory_mapped_files(tmp_path, monkeypatch, capsys):
    D, P = _instance(3000, 3, seed=5)
    np.save(tmp_path / "D.npy", D.astype(np.float32))
    np.save(tmp_path / "P.npy", P.astype(np.float32))
    modes = []
    load = cli.load_array
    monkeypatch.setattr(cli, "load_array", lambda *a, **k: modes.append(k.get("mmap_mode")) or load(*a, **k))
    args = ["solve", "--domains", str(tmp_path / "D.npy"), "--experts", str(tmp_path / "P.npy"), "--json"]
    assert cli.main(args) == 0
    mapped = json.loads(capsys.readouterr().out)
    assert modes == ["r", "r"]
    dense = solve_dual(np.load(tmp_path / "D.npy").astype(np.float64), np.load(tmp_path / "P.npy").astype(np.float64))
    assert abs(mapped["value"] - dense.value) < 1e-12
    modes.clear()
    # The fixed-mixture problem (and every other solver) reads the arrays whole.
    assert cli.main(args[:-1] + ["--mixture", "0.2,0.3,0.5", "--json"]) == 0
    capsys.readouterr()
    assert modes == [None, None]


BLOCKED = np.load(Path(__file__).parent / "data" / "blocked_dual_reference.npz")


@pytest.mark.parametrize("name, n, p, seed, stride", reference_cases.CASES)
def test_blocked_solve_reproduces_the_stored_reference(name, n, p, seed, stride):
    # Stored from the solver before the kernel tuning (c336176): the passes' block sizes,
    # fused reductions and Hessians on request must not move the results.
    get = lambda key: BLOCKED[f"{name}/{key}"]  # noqa: E731
    D, P = reference_cases.instance(n, p, seed)
    weights = np.arange(1, n + 1)
    assert (D * weights).sum() == pytest.approx(float(get("D_sum")), rel=1e-13), "random stream changed: regenerate"
    assert (P * weights).sum() == pytest.approx(float(get("P_sum")), rel=1e-13), "random stream changed: regenerate"
    res = solve_dual(D, P, tol=1e-10)
    assert res.status == "optimal"
    assert abs(res.value - float(get("value"))) < 1e-10
    np.testing.assert_allclose(res.kl, get("kl"), rtol=0, atol=1e-10)
    assert np.abs(np.log(res.q[::stride]) - np.log(get("q"))).max() < 1e-10  # q in nats
    _assert_same_lam(D, P, res.lam, get("lam"))


def _assert_same_lam(D, P, lam, other):
    """Mixtures equal in nats: phi agrees to 1e-10 at both, and lam itself to 1e-7.

    phi is flat to rounding near lam* (gap 1e-15 over 4e-8 in lam at p = 2), so the
    returned lam, the iterate with the best lower bound, may be another of two iterates
    of equal bound when rounding changes; their phi values are what certify.
    """
    oracle = _FullFamily.of_experts(D, P)
    assert abs(oracle(np.asarray(lam)).lower - oracle(np.asarray(other)).lower) < 1e-10
    np.testing.assert_allclose(lam, other, rtol=0, atol=1e-7)


def _one_block(monkeypatch, n):
    """Every pass over the data as one block of all n outcomes (the unchunked path)."""
    import theory.dual as dual
    import theory.simplex as simplex
    import theory.validation as validation

    for module in (dual, validation):
        monkeypatch.setattr(module, "columns", lambda p: n)
    monkeypatch.setattr(dual, "BLOCK", n)
    monkeypatch.setattr(simplex, "BLOCK", n)


@pytest.mark.parametrize("p", [2, 8, 32])
def test_blocked_solve_agrees_with_one_block(monkeypatch, p):
    D, P = reference_cases.instance(70_000, p, seed=p)
    blocked = solve_dual(D, P, tol=1e-10)
    _one_block(monkeypatch, D.shape[1])
    whole = solve_dual(D, P, tol=1e-10)
    assert blocked.status == whole.status == "optimal"
    assert abs(blocked.value - whole.value) < 1e-10
    assert np.abs(np.log(blocked.q) - np.log(whole.q)).max() < 1e-10
    _assert_same_lam(D, P, blocked.lam, whole.lam)


def test_hessian_on_request_when_the_last_step_does_not_close_the_gap(monkeypatch):
    # Every full step taken as the last: its point has no Gram columns, and stepping on
    # from it builds the Hessian by a pass of its own (rank-k updates), with the same result.
    import theory.dual as dual

    D, P = reference_cases.instance(30_000, 6, seed=9)
    default = solve_dual(D, P, tol=1e-12)
    grams = []
    gram = dual._FullFamily._gram
    monkeypatch.setattr(dual, "_LAST_STEP", 0.0)
    monkeypatch.setattr(dual._FullFamily, "_gram", lambda self, point: grams.append(1) or gram(self, point))
    lazy = solve_dual(D, P, tol=1e-12)
    assert grams  # the Hessian on request was used
    assert default.status == lazy.status == "optimal"
    assert abs(default.value - lazy.value) < 1e-10
    assert np.abs(np.log(default.q) - np.log(lazy.q)).max() < 1e-10
    _assert_same_lam(D, P, default.lam, lazy.lam)


def test_window_level_passes_equal_full_passes():
    # The outcomes listed near t0's breakpoints give S(t), the free mass and the changed
    # outcomes at every t of the window exactly as a full pass over the n-vectors does.
    from theory.dual import _WINDOW, _Window

    D, P = _instance(20_000, 4, seed=7, spread=0.3)
    oracle = _FullFamily.of_experts(D, P)
    lam, t0 = np.array([0.1, 0.2, 0.3, 0.4]), 0.98
    v = oracle.v
    first = oracle._sweep(v, lam=lam, t=t0, moments=True)[:2]
    oracle.v_lam = lam.copy()
    assert 0 < oracle.near.size < 0.2 * v.size
    window = _Window(t0, first, oracle.near, v, oracle.lo, oracle.hi)
    for t in (t0 * (1 - _WINDOW), t0 * 0.997, t0, t0 * 1.002, t0 * (1 + _WINDOW)):
        assert window.covers(t)
        total, free, changed = window.mass_at(t)
        full_total, full_free = oracle._tracked_pass(v, t)
        assert total == pytest.approx(full_total, rel=1e-13)
        assert free == pytest.approx(full_free, rel=1e-13)
        np.testing.assert_array_equal(changed, oracle.changes[t])
    assert changed.size > 0  # outcomes change clipping inside the window
    assert not window.covers(t0 * (1 + 2 * _WINDOW)) and not window.covers(t0 * (1 - 2 * _WINDOW))


def test_solve_agrees_without_the_window(monkeypatch):
    # A window too narrow for any level step: every level pass is a full pass.
    import theory.dual as dual

    D, P = reference_cases.instance(50_000, 5, seed=11)
    windowed = solve_dual(D, P, tol=1e-10)
    passes = []
    tracked = dual._FullFamily._tracked_pass
    monkeypatch.setattr(dual, "_WINDOW", 1e-300)
    monkeypatch.setattr(dual._FullFamily, "_tracked_pass", lambda self, v, t: passes.append(t) or tracked(self, v, t))
    full = solve_dual(D, P, tol=1e-10)
    assert passes
    assert windowed.status == full.status == "optimal"
    assert abs(windowed.value - full.value) < 1e-10
    assert np.abs(np.log(windowed.q) - np.log(full.q)).max() < 1e-10
    _assert_same_lam(D, P, windowed.lam, full.lam)
