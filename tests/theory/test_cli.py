"""``python -m theory solve`` end to end, as a user runs it (subprocess)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.theory.instances import make_instance

ROOT = Path(__file__).resolve().parents[2]


def run(*args):
    return subprocess.run([sys.executable, "-m", "theory", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    D, P = make_instance("overlapping", 30, 3, 0)
    np.save(tmp / "D.npy", D)
    np.save(tmp / "P.npy", P)
    np.save(tmp / "cells.npy", np.arange(30) % 4)
    bad = D.copy()
    bad[1, 4] = np.nan
    np.save(tmp / "bad.npy", bad)
    (tmp / "junk.npy").write_text("not an array")
    return tmp


def test_json_robust_cvxpy_and_out(files):
    out = files / "q.npy"
    r = run("solve", "--domains", str(files / "D.npy"), "--experts", str(files / "P.npy"),
            "--solver", "cvxpy", "--json", "--out", str(out))
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    for key in ("value", "lam", "gap", "status", "solver", "iterations", "seconds", "n", "p"):
        assert key in res
    assert res["solver"] == "cvxpy" and res["n"] == 30 and res["p"] == 3 and res["status"] == "optimal"
    q = np.load(out)
    assert q.shape == (30,) and abs(q.sum() - 1) <= 1e-12
    assert abs(sum(res["lam"]) - 1) <= 1e-9


def test_partition_mixture_and_prior(files):
    base = ("solve", "--domains", str(files / "D.npy"), "--experts", str(files / "P.npy"), "--json")
    part = json.loads(run(*base, "--solver", "cvxpy", "--partition", str(files / "cells.npy")).stdout)
    full = json.loads(run(*base, "--solver", "cvxpy").stdout)
    assert part["family"] == "partition" and part["value"] >= full["value"] - 1e-7
    mix = run(*base, "--mixture", "0.2,0.3,0.5")
    assert mix.returncode == 0, mix.stderr
    assert json.loads(mix.stdout)["lam"] == [0.2, 0.3, 0.5]
    boxed = json.loads(run(*base, "--solver", "cvxpy", "--lambda-upper", "0.4,0.4,0.4").stdout)
    assert max(boxed["lam"]) <= 0.4 + 1e-9 and boxed["value"] <= full["value"] + 1e-7


def test_human_readable(files):
    r = run("solve", "--domains", str(files / "D.npy"), "--experts", str(files / "P.npy"), "--solver", "cvxpy")
    assert r.returncode == 0 and "value" in r.stdout and "lambda" in r.stdout and "status optimal" in r.stdout


def test_not_converged_exits_3_and_still_prints(files):
    r = run("solve", "--domains", str(files / "D.npy"), "--experts", str(files / "P.npy"),
            "--solver", "fixed-point", "--tol", "1e-12", "--json")
    assert r.returncode == 3
    assert json.loads(r.stdout)["status"] == "not_converged"


@pytest.mark.parametrize(
    "args, message",
    [
        (("--domains", "{f}/missing.npy", "--experts", "{f}/P.npy"), "cannot read domains file"),
        (("--domains", "{f}/junk.npy", "--experts", "{f}/P.npy"), "cannot read domains file"),
        (("--domains", "{f}/bad.npy", "--experts", "{f}/P.npy"), "row 1, outcome 4"),
        (("--domains", "{f}/D.npy", "--experts", "{f}/P.npy", "--solver", "newton"), "invalid choice: 'newton'"),
        (("--domains", "{f}/D.npy", "--experts", "{f}/P.npy", "--mixture", "0.5,x,0.5"), "--mixture must be"),
        (("--domains", "{f}/D.npy", "--experts", "{f}/P.npy", "--mixture", "0.5,0.5"), "length p=3"),
        (("--domains", "{f}/D.npy", "--experts", "{f}/P.npy", "--lambda-lower", "0.5,0.5,0.5"), "infeasible"),
        (("--domains", "{f}/D.npy", "--experts", "{f}/P.npy", "--tol", "-1"), "--tol must be positive"),
    ],
)
def test_bad_input_exits_2_with_one_line(files, args, message):
    r = run("solve", *(a.format(f=files) for a in args))
    assert r.returncode == 2
    assert r.stdout == "" and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr


def test_missing_subcommand_exits_2():
    r = run()
    assert r.returncode == 2 and "Traceback" not in r.stderr


# --------------------------------------------------------------------------- the input contract, in-process

def _main(*argv):
    import contextlib
    import io

    from theory.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def _one_line_exit_2(rc, out, err, message):
    assert rc == 2 and out == "", err
    assert len(err.strip().splitlines()) == 1 and message in err, err


@pytest.mark.parametrize("how, message", [
    ("structured", "structured dtype"), ("npz", "is an .npz archive"), ("devnull", "the file is empty"),
    ("empty", "the file is empty"), ("string", "string dtype"), ("complex", "complex dtype"),
])
def test_bad_domain_files_one_line(files, tmp_path, how, message):
    D = np.load(files / "D.npy")
    path = tmp_path / "D.npy"
    if how == "structured":
        np.save(path, np.zeros(30, dtype=[("a", "f8"), ("b", "i4")]))
    elif how == "npz":
        np.savez(path.with_suffix(".npz"), D=D)
        path = path.with_suffix(".npz")
    elif how == "devnull":
        path = "/dev/null"
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "string":
        np.save(path, D.astype(str))
    elif how == "complex":
        np.save(path, D + 1e-3j)  # would silently lose its imaginary part when cast to float
    _one_line_exit_2(*_main("solve", "--domains", str(path), "--experts", str(files / "P.npy")), message)


def test_string_partition_one_line(files, tmp_path):
    np.save(tmp_path / "cells.npy", np.array(["a"] * 30))
    _one_line_exit_2(*_main("solve", "--domains", str(files / "D.npy"), "--experts", str(files / "P.npy"),
                            "--partition", str(tmp_path / "cells.npy")), "string dtype")


@pytest.mark.parametrize("option, value, message", [
    ("--lambda-lower", "nan,nan,nan", "NaN"), ("--lambda-upper", "nan,1,1", "NaN"),
    ("--tol", "inf", "--tol must be a finite number"), ("--tol", "nan", "--tol must be a finite number"),
    ("--mixture", "inf,0,0", "infinite"), ("--gate", "constant", "unrecognized arguments"),
])
def test_bad_options_one_line(files, option, value, message):
    _one_line_exit_2(*_main("solve", "--domains", str(files / "D.npy"), "--experts", str(files / "P.npy"),
                            option, value), message)


def test_family_option_and_exact_out_path(files, tmp_path):
    rc, out, err = _main("solve", "--domains", str(files / "D.npy"), "--experts", str(files / "P.npy"),
                         "--family", "constant", "--json", "--out", str(tmp_path / "q"))
    assert rc == 0, err
    assert json.loads(out)["family"] == "constant"
    assert np.load(tmp_path / "q").shape == (30,) and not (tmp_path / "q.npy").exists()


def test_out_write_errors_exit_2_before_solving(files, tmp_path):
    base = ("solve", "--domains", str(files / "D.npy"), "--experts", str(files / "P.npy"))
    _one_line_exit_2(*_main(*base, "--out", "/dev/full"), "No space left on device")
    _one_line_exit_2(*_main(*base, "--out", str(tmp_path / "no" / "q.npy")), "does not exist")


def test_json_nan_becomes_null_with_a_note(files, monkeypatch):
    """A non-finite number in the result is printed as null with the reason, never as NaN."""
    import theory.solve

    real = theory.solve.solve_robust

    def with_infinite_upper(*args, **kwargs):
        res = real(*args, **kwargs)
        return dataclasses.replace(res, upper=float("inf"), gap=float("nan"))

    import dataclasses

    monkeypatch.setattr(theory.solve, "solve_robust", with_infinite_upper)
    rc, out, err = _main("solve", "--domains", str(files / "D.npy"), "--experts", str(files / "P.npy"), "--json")
    res = json.loads(out, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))
    assert res["upper"] is None and res["gap"] is None
    assert res["nonfinite"] == {"gap": "nan", "upper": "inf"} and "nonfinite_note" in res


def test_solver_internal_failure_is_one_line(tmp_path):
    """The fixed-point solver on a subnormal instance: its root finder meets NaN (exit 1, one line)."""
    np.save(tmp_path / "D.npy", np.array([[1, 5e-324, 0], [.3, .3, .4]]))
    np.save(tmp_path / "P.npy", np.array([[1, 5e-324, 0], [0, 5e-324, 1]]))
    rc, out, err = _main("solve", "--domains", str(tmp_path / "D.npy"), "--experts", str(tmp_path / "P.npy"),
                         "--solver", "fixed-point")
    assert rc in (0, 1, 3) and "Traceback" not in err
    if rc == 1:
        assert out == "" and len(err.strip().splitlines()) == 1 and "solver fixed-point failed" in err


def test_cvxpy_on_a_subnormal_instance_exits_3_with_an_honest_certificate(tmp_path):
    """Clarabel stops at its iteration limit (``user_limit``) here; its point is certified, not dropped (was exit 1)."""
    from theory import kl

    D, P = np.array([[1, 5e-324, 0], [.3, .3, .4]]), np.array([[1, 5e-324, 0], [0, 5e-324, 1]])
    np.save(tmp_path / "D.npy", D)
    np.save(tmp_path / "P.npy", P)
    rc, out, err = _main("solve", "--domains", str(tmp_path / "D.npy"), "--experts", str(tmp_path / "P.npy"),
                         "--solver", "cvxpy", "--json", "--out", str(tmp_path / "q.npy"))
    assert rc == 3, err
    assert len(err.strip().splitlines()) == 1 and "status inaccurate" in err
    res = json.loads(out, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))
    q = np.load(tmp_path / "q.npy", allow_pickle=False)
    assert abs(q.sum() - 1) < 1e-12 and res["cvxpy_status"] == "user_limit" and res["status"] == "inaccurate"
    assert res["upper"] == pytest.approx(kl(D, q).max(), rel=1e-12)
    # The dual solver's certified optimum (222.72115727) lies inside the reported bracket.
    assert res["lower"] <= 222.72115727435946 <= res["upper"] and res["gap"] == pytest.approx(res["upper"] - res["lower"])


@pytest.mark.parametrize("how", ["devnull", "empty"])
def test_empty_partition_file_one_line(files, tmp_path, how):
    path = "/dev/null" if how == "devnull" else tmp_path / "cells.npy"
    if how == "empty":
        path.write_bytes(b"")
    _one_line_exit_2(*_main("solve", "--domains", str(files / "D.npy"), "--experts", str(files / "P.npy"),
                            "--partition", str(path)), "the file is empty")
