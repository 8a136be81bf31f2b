"""One solver contract: status from the certificate and the requested tol, one warning, one vocabulary."""

import inspect
import json
import subprocess
import sys
import warnings
from pathlib import Path

import cvxpy as cp
import numpy as np
import pytest

import theory.cvx
from theory.best_response import best_response, family_cells, fit_gate_weights
from theory.capacity import blahut_arimoto
from theory.claims.algorithm import check_alg1_rate
from theory.claims.instances import make_instance as claims_instance
from theory.claims.monolithic import mixture_mle
from theory.cvx import solve_cvxpy
from theory.dual import solve_dual
from theory.fixed_point import solve_fixed_point
from theory.gates import gated_model
from theory.result import ConvergenceWarning
from theory.solve import solve_fixed_mixture
from tests.theory.instances import make_instance

ROOT = Path(__file__).resolve().parents[2]
D, P = make_instance("overlapping", 40, 3, 4)
LAM = np.array([0.5, 0.3, 0.2])
#: Below every certificate these solvers can reach (the smallest positive float).
UNREACHABLE = float(np.finfo(float).tiny)

SOLVERS = {
    "dual": lambda tol, short: solve_dual(D, P, tol=tol, max_iter=1 if short else 100),
    "dual-constant": lambda tol, short: solve_dual(D, P, family="constant", tol=tol, max_iter=1 if short else 100),
    "cvxpy": lambda tol, short: solve_cvxpy(D, P, tol=tol),
    "fixed-point": lambda tol, short: solve_fixed_point(D, P, tol=tol, max_iter=5 if short else 3000),
    "fixed-mixture": lambda tol, short: solve_fixed_mixture(D, P, LAM, tol=tol),
    "fixed-mixture-constant": lambda tol, short: solve_fixed_mixture(D, P, LAM, family="constant", tol=tol),
    "blahut-arimoto": lambda tol, short: blahut_arimoto(D, tol=tol, max_iter=2 if short else 100_000),
}


@pytest.mark.parametrize("name", [name for name in SOLVERS if name != "fixed-mixture"])
def test_missing_the_tolerance_warns_and_says_so(name):
    # (The full family's fixed mixture is a closed form: its certified gap is exactly zero.)
    with pytest.warns(ConvergenceWarning, match=r"status (not_converged|inaccurate), certified gap"):
        res = SOLVERS[name](UNREACHABLE, True)
    assert res.status in ("not_converged", "inaccurate") and res.gap > res.tol


@pytest.mark.parametrize("name", SOLVERS)
def test_meeting_the_tolerance_is_optimal_without_a_warning(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = SOLVERS[name](1e-5, False)
    assert res.status == "optimal" and res.gap <= res.tol == 1e-5


def test_restricted_best_response_warns_on_its_certificate():
    # Near-identical experts: the fit stops at its rounding floor, a gap of ~1e-12 nats.
    Dn, Pn = make_instance("near-degenerate", 200, 3, 4)
    with pytest.warns(ConvergenceWarning, match=r"restricted best response \(constant\)"):
        best_response(Dn, Pn, LAM, family="constant", tol=1e-14)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        best_response(Dn, Pn, LAM, family="constant")
    labels, C = family_cells("partition", np.arange(40) % 3, 40)
    fit = fit_gate_weights(LAM @ D, P, labels, C, max_iter=1)
    assert fit.status == "not_converged" and fit.fw_gap > fit.tol
    fit = fit_gate_weights(LAM @ D, P, labels, C, tol=1e-9)
    assert fit.status == "optimal" and fit.fw_gap <= 1e-9


@pytest.mark.parametrize("solver", [solve_dual, solve_cvxpy, solve_fixed_point, solve_fixed_mixture, blahut_arimoto,
                                    best_response, fit_gate_weights, mixture_mle])
def test_options_are_named_tol_and_max_iter(solver):
    names = set(inspect.signature(solver).parameters)
    assert "tol" in names
    assert not names & {"iterations", "iters", "max_iters", "n_iter"}


def _report_inaccurate(real_solve):
    def solve(problem, solver, options):
        status, used = real_solve(problem, solver, options)
        return cp.OPTIMAL_INACCURATE, used
    return solve


def test_cvxpy_status_follows_the_certificate_not_the_conic_status(monkeypatch):
    # Clarabel's "optimal_inaccurate" says nothing about the certified gap: with a
    # requested tol the certificate decides, without one the conic status is all there is.
    monkeypatch.setattr(theory.cvx, "_solve", _report_inaccurate(theory.cvx._solve))
    res = solve_cvxpy(D, P, tol=1e-6)
    assert res.info["cvxpy_status"] == "optimal_inaccurate"
    assert res.gap <= 1e-6 and res.status == "optimal"
    with pytest.warns(ConvergenceWarning):
        assert solve_cvxpy(D, P, tol=UNREACHABLE).status == "inaccurate"
    assert solve_cvxpy(D, P).status == "inaccurate"


def test_cvxpy_cli_exits_zero_when_the_certified_gap_meets_tol(tmp_path):
    # The instance where Clarabel stops at "optimal_inaccurate" with a certified gap of
    # ~1e-9 nats: n = 600, p = 5, Dirichlet(0.3) domains, experts 0.75 D + 0.25 Dirichlet(1).
    rng = np.random.default_rng(2)
    Dm = rng.dirichlet(np.full(600, 0.3), size=5)
    Pm = 0.75 * Dm + 0.25 * rng.dirichlet(np.ones(600), size=5)
    np.save(tmp_path / "D.npy", Dm)
    np.save(tmp_path / "P.npy", Pm)
    r = subprocess.run([sys.executable, "-m", "theory", "solve", "--domains", str(tmp_path / "D.npy"),
                        "--experts", str(tmp_path / "P.npy"), "--solver", "cvxpy", "--tol", "1e-7", "--json"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    out = json.loads(r.stdout)
    assert out["gap"] <= 1e-7
    assert r.returncode == 0 and out["status"] == "optimal", (out["cvxpy_status"], r.stderr)


def test_fixed_mixture_constant_gate_is_the_fits_weights():
    # Identical experts: many weights give the same model; the gate returned is the one
    # the fit certified (it realises q exactly), not a least-squares reconstruction.
    Di, Pi = make_instance("identical", 30, 3, 1)
    res = solve_fixed_mixture(Di, Pi, LAM, family="constant")
    np.testing.assert_allclose(gated_model(res.gate, Pi), res.q, rtol=0, atol=1e-16)
    assert res.status == "optimal" and res.tol == 1e-9


def test_algorithm1_rate_check_runs_its_whole_horizon():
    # Regression: the check asked for tol=0, which the tolerance check refuses.
    inst = claims_instance("random", 3, 20, 0.3, np.random.default_rng(0))
    check = check_alg1_rate(inst, [10, 40, 160])[0]
    assert np.isfinite(check.truth) and (check.quantities["gaps"] > 0).all()
