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
