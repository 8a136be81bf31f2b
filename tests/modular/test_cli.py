"""Command line ``python -m modular fit``: output keys, fallback, bad input (exit 2, one line)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from modular.cli import main
from tests.modular.modular_instances import entropies, finite_instance

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write(path, D, P, m=200, experts=True, seed=0, **extra):
    rng = np.random.default_rng(seed)
    logP = np.log(P)
    arrays = {}
    for k in range(D.shape[0]):
        x = rng.choice(D.shape[1], size=m, p=D[k])
        arrays[f"logp_{k}"] = logP[:, x].T
        arrays[f"feat_{k}"] = x
        if experts:
            y = rng.choice(D.shape[1], size=m, p=P[k])
            arrays[f"expert_logp_{k}"] = logP[:, y].T
            arrays[f"expert_feat_{k}"] = y
    arrays.update(extra)
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def instance():
    return finite_instance(12, 2, 0)


def test_subprocess_json_output(tmp_path, instance):
    D, P = instance
    data = _write(tmp_path / "data.npz", D, P)
    h = ",".join(f"{v:.12f}" for v in entropies(D))
    out = tmp_path / "res.json"
    proc = subprocess.run(
        [sys.executable, "-m", "modular", "fit", str(data), "--entropy", h, "--steps", "300", "--seed", "1",
         "--device", "cpu", "--json", "--gate", "tabular", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    # Exit 0 iff the whole-set residuals certify convergence, else 3 with the result printed.
    assert proc.returncode in (0, 3), proc.stderr
    res = json.loads(proc.stdout)
    assert (proc.returncode == 0) == (res["status"] == "converged")
    for key in ("lam", "nll", "kl", "z", "z_estimator", "steps", "seconds", "device", "seed", "adversary", "gate"):
        assert key in res
    assert res["z_estimator"] == "importance" and res["adversary"] == "kl" and res["device"] == "cpu"
    assert res["steps"] == 300 and len(res["lam"]) == 2 and abs(sum(res["lam"]) - 1) < 1e-9
    np.testing.assert_allclose(np.array(res["nll"]) - entropies(D), res["kl"], atol=1e-12)
    assert len(json.loads(out.read_text())["history"]["lam"]) == 30


def test_subprocess_bad_input_exits_2_with_one_line(tmp_path, instance):
    D, P = instance
    logp = np.log(P)[:, :5].T.copy()
    logp[3, 1] = np.nan
    data = tmp_path / "bad.npz"
    np.savez(data, logp_0=logp, logp_1=logp)
    proc = subprocess.run([sys.executable, "-m", "modular", "fit", str(data)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "domain 0: sample 3, expert 1" in proc.stderr


def test_without_expert_samples_falls_back_to_the_labelled_shortcut(tmp_path, instance, capsys):
    D, P = instance
    data = _write(tmp_path / "data.npz", D, P, experts=False)
    code = main(["fit", str(data), "--steps", "50", "--json", "--device", "cpu"])
    res = json.loads(capsys.readouterr().out)
    assert code == {"converged": 0, "not_converged": 3}[res["status"]]
    assert res["z_estimator"] == "data-shortcut" and res["z_unbiased"] is False
    assert "biased" in res["note"] and res["kl"] is None and res["adversary"] == "excess"
    assert main(["fit", str(data), "--steps", "20", "--device", "cpu"]) == 3  # 20 steps do not converge
    assert "data-shortcut, biased" in capsys.readouterr().out


def _bad_cases(tmp_path, D, P):
    lp = np.log(P)[:, :6].T.copy()
    inf = lp.copy()
    inf[2, 0] = np.inf
    dead = lp.copy()
    dead[4] = -np.inf
    return {
        "nan": ({"logp_0": np.where(np.arange(2) == 0, np.nan, lp), "logp_1": lp}, [], "NaN or +inf"),
        "plus inf": ({"logp_0": lp, "logp_1": inf}, [], "domain 1: sample 2, expert 0"),
        "every expert -inf": ({"logp_0": dead, "logp_1": lp}, [], "sample 4 has log-probability -inf"),
        "feature rows": ({"logp_0": lp, "logp_1": lp, "feat_0": np.zeros((5, 2))}, [], "features have 5 rows"),
        "missing domain": ({"logp_0": lp, "logp_2": lp}, [], "domain 1 is missing"),
        "inconsistent p": ({"logp_0": lp, "logp_1": np.log(np.full((6, 3), 1 / 3))}, [], "expected p=2"),
        "too few domains": ({"logp_0": lp}, [], "1 domains given for p=2"),
        "no domains": ({"other": lp}, [], "no arrays named logp_0"),
        "entropy count": ({"logp_0": lp, "logp_1": lp}, ["--entropy", "1,2,3"], "--entropy has 3 values"),
        "entropy text": ({"logp_0": lp, "logp_1": lp}, ["--entropy", "1,x"], "comma-separated"),
        "tabular on floats": ({"logp_0": lp, "logp_1": lp}, ["--gate", "tabular"], "needs integer features"),
        "missing expert": ({"logp_0": lp, "logp_1": lp, "expert_logp_0": lp}, [], "expert_logp_1 is missing"),
        "cuda": ({"logp_0": lp, "logp_1": lp}, ["--device", "cuda"], "CUDA is not available"),
    }


@pytest.mark.parametrize("case", [
    "nan", "plus inf", "every expert -inf", "feature rows", "missing domain", "inconsistent p", "too few domains",
    "no domains", "entropy count", "entropy text", "tabular on floats", "missing expert", "cuda",
])
def test_bad_input_exits_2(tmp_path, instance, capsys, case):
    import torch

    if case == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available")
    arrays, extra, message = _bad_cases(tmp_path, *instance)[case]
    data = tmp_path / "data.npz"
    np.savez(data, **arrays)
    with pytest.raises(SystemExit) as exc:
        code = main(["fit", str(data), "--steps", "5", *extra])
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_missing_file(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "nope.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_sequence_gate_reads_token_features(tmp_path, capsys):
    rng = np.random.default_rng(0)
    arrays = {}
    for k in range(2):
        arrays[f"logp_{k}"] = np.log(rng.dirichlet(np.ones(2), size=40))
        arrays[f"feat_{k}"] = rng.integers(0, 4, size=(40, 5))
    np.savez(tmp_path / "seq.npz", **arrays)
    assert main(["fit", str(tmp_path / "seq.npz"), "--gate", "sequence", "--steps", "20", "--json",
                 "--device", "cpu", "--adversary", "nll"]) in (0, 3)
    res = json.loads(capsys.readouterr().out)
    assert res["gate"] == "sequence" and res["adversary"] == "nll" and len(res["nll"]) == 2


def test_the_parser_and_help_need_no_torch():
    """``python -m modular fit --help`` builds the whole parser without importing torch (start-up)."""
    import subprocess
    import sys

    code = ("import sys; from modular.cli import build_parser; p = build_parser(); "
            "p.parse_args(['fit', 'x.npz', '--steps', '5']); import modular; modular.__all__; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    # ... while a name of the package still imports its module on first use
    out = subprocess.run([sys.executable, "-c", "import sys, modular; modular.fit_robust_gate; "
                          "print('torch' in sys.modules)"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
