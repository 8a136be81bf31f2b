"""``python -m modular fit`` / ``score``: exit statuses, gate files, checkpoints, reports, bad options."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from modular.cli import main
from modular.gate_io import load_gate
from tests.modular.modular_instances import entropies, finite_instance
from tests.modular.test_cli import ROOT, _write

torch.set_num_threads(1)


def _strict_json(text):
    def bad(name):
        raise AssertionError(f"not JSON: {name}")
    return json.loads(text, parse_constant=bad)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    D, P = finite_instance(12, 2, 0)
    path = tmp_path_factory.mktemp("d") / "data.npz"
    _write(path, D, P, m=400)
    return path, ",".join(f"{h:.12f}" for h in entropies(D))


def _run(capsys, argv):
    code = main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_not_converged_exits_3_with_the_result(capsys, data):
    path, h = data
    code, out, _ = _run(capsys, ["fit", str(path), "--entropy", h, "--steps", "20", "--gate", "tabular", "--json"])
    res = _strict_json(out)
    assert code == 3 and res["status"] == "not_converged" and res["steps"] == 20
    assert (res["gap"] > res["tol_gap"] or res["z_residual"] > res["tol_z"]
            or res["z_holdout_residual"] > res["tol_z"] + 2 * res["z_holdout_se"])
    code, out, _ = _run(capsys, ["fit", str(path), "--entropy", h, "--steps", "20", "--gate", "tabular"])
    assert code == 3 and "status not_converged" in out


def test_the_held_out_z_is_reported_and_its_options(capsys, data):
    """By default 20% of every expert set (400 samples here) is held out: Z on it, with its
    standard error, in the JSON and the text; --z-holdout 0 and --no-z-debias turn it off."""
    path, h = data
    base = ["fit", str(path), "--entropy", h, "--steps", "300", "--gate", "tabular"]
    res = _strict_json(_run(capsys, base + ["--json"])[1])
    assert res["z_holdout_fraction"] == 0.2 and res["z_holdout_m"] == [80, 80] and res["z_debias"] is True
    assert res["z_holdout"] > 0 and res["z_holdout_se"] > 0 and res["z_target"] != 1.0
    assert res["z_residual"] == pytest.approx(abs(res["z"] - res["z_target"]))
    text = _run(capsys, base)[1]
    assert "on held-out expert samples" in text and "held-out |Z - 1|" in text
    res = _strict_json(_run(capsys, base + ["--json", "--no-z-debias"])[1])
    assert res["z_target"] == 1.0 and res["z_holdout"] is not None and res["z_debias"] is False
    res = _strict_json(_run(capsys, base + ["--json", "--z-holdout", "0"])[1])
    assert res["z_holdout"] is None and res["z_holdout_se"] is None and res["z_holdout_fraction"] == 0.0
    assert "held-out" not in _run(capsys, base + ["--z-holdout", "0"])[1]
    code, _, err = _run(capsys, base + ["--z-holdout", "1"])
    assert code == 2 and err.count("\n") == 1 and "--z-holdout" in err


def test_exact_solver_converges_and_prints_strict_json(capsys, data):
    path, h = data
    code, out, _ = _run(capsys, ["fit", str(path), "--entropy", h, "--gate", "tabular", "--solver", "exact",
                                 "--json"])
    res = _strict_json(out)
    assert code == 0 and res["status"] == "converged" and res["solver"] == "exact"
    assert res["mu"] is None  # the exact solve has no multiplier: null, not NaN
    assert res["certified_gap"] <= 1e-9
    code, _, err = _run(capsys, ["fit", str(path), "--gate", "linear", "--solver", "exact"])
    assert code == 2 and err.count("\n") == 1 and "tabular" in err


@pytest.mark.parametrize("opts,message", [
    (["--checkpoint-every", "0"], "--checkpoint-every"), (["--lr", "nan"], "--lr"), (["--lr", "-1"], "--lr"),
    (["--lam-lr", "inf"], "--lam-lr"), (["--holdout", "1.5"], "--holdout"), (["--tol-gap", "-1"], "--tol-gap"),
    (["--steps", "0"], "--steps"), (["--batch-size", "x"], "--batch-size"), (["--threads", "0"], "--threads"),
    (["--lambda-lower", "nan,0"], "finite"), (["--lambda-lower", "0.1,0.2,0.3"], "--lambda-lower has 3"),
])
def test_bad_options_exit_2_with_one_line(capsys, data, opts, message):
    path, _ = data
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(["fit", str(path), "--steps", "5", *opts] if "--steps" not in opts
                              else ["fit", str(path), *opts]))
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and message in err and "Traceback" not in err


@pytest.mark.parametrize("flag", ["--checkpoint", "--save", "--out", "--report"])
def test_output_paths_in_missing_directories_are_refused_before_training(capsys, data, tmp_path, flag):
    path, _ = data
    t0 = time.perf_counter()
    code, _, err = _run(capsys, ["fit", str(path), "--steps", str(10 ** 8), flag, str(tmp_path / "no" / "x")])
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err
    assert time.perf_counter() - t0 < 30  # 1e8 steps were not run


def test_save_load_score_round_trip_bit_for_bit(capsys, data, tmp_path):
    path, h = data
    gate_file = tmp_path / "gate.pt"
    code, out, _ = _run(capsys, ["fit", str(path), "--entropy", h, "--steps", "200", "--gate", "tabular", "--json",
                                 "--save", str(gate_file)])
    fit = _strict_json(out)
    loaded = load_gate(gate_file)
    assert loaded.kind == "tabular" and loaded.meta["lam"] == fit["lam"]
    assert loaded.meta["data_fingerprint"] == fit["data_fingerprint"] and loaded.meta["result"]["status"] == fit["status"]
    assert loaded.meta["options"]["steps"] == 200
    code, out, _ = _run(capsys, ["score", str(gate_file), str(path), "--entropy", h, "--json",
                                 "--mixture", "0.25,0.75"])
    score = _strict_json(out)
    assert code == 0 and score["training_data"] is True
    assert score["nll"] == fit["nll"] and score["z"] == fit["z"] and score["kl"] == fit["kl"]  # bit for bit
    assert fit["z_holdout"] is not None and (score["z_holdout"], score["z_holdout_se"]) == (
        fit["z_holdout"], fit["z_holdout_se"])
    assert score["mixtures"][0]["nll"] == pytest.approx(0.25 * fit["nll"][0] + 0.75 * fit["nll"][1], abs=1e-15)
    # Other data: scored, and said so.
    D, P = finite_instance(12, 2, 0)
    other = _write(tmp_path / "other.npz", D, P, m=100, seed=5)
    code, out, _ = _run(capsys, ["score", str(gate_file), str(other), "--json"])
    assert code == 0 and _strict_json(out)["training_data"] is False
    # A gate for another p, or for ids the data exceed, is refused with one line.
    D3, P3 = finite_instance(12, 3, 0)
    three = _write(tmp_path / "three.npz", D3, P3, m=50)
    code, _, err = _run(capsys, ["score", str(gate_file), str(three)])
    assert code == 2 and err.count("\n") == 1 and "p=2" in err
    code, _, err = _run(capsys, ["score", str(tmp_path / "three.npz"), str(path)])
    assert code == 2 and err.count("\n") == 1 and "gate file" in err


def test_checkpoint_of_other_data_is_refused(capsys, data, tmp_path):
    path, h = data
    ck = tmp_path / "fit.pt"
    code, _, _ = _run(capsys, ["fit", str(path), "--entropy", h, "--steps", "40", "--gate", "tabular",
                               "--checkpoint", str(ck), "--checkpoint-every", "20"])
    assert code in (0, 3) and ck.exists()
    D, P = finite_instance(12, 2, 0)
    other = _write(tmp_path / "other.npz", D, P, m=400, seed=9)
    code, _, err = _run(capsys, ["fit", str(other), "--entropy", h, "--steps", "40", "--gate", "tabular",
                                 "--checkpoint", str(ck), "--checkpoint-every", "20"])
    assert code == 2 and err.count("\n") == 1 and "other data" in err


def test_report_and_holdout(capsys, data, tmp_path):
    path, h = data
    rep = tmp_path / "rep"
    code, out, _ = _run(capsys, ["fit", str(path), "--entropy", h, "--steps", "100", "--gate", "tabular", "--json",
                                 "--report", str(rep), "--holdout", "0.25", "--check-every", "20"])
    res = _strict_json(out)
    assert res["holdout"]["m"] == [100, 100] and len(res["holdout"]["kl"]) == 2 and res["holdout"]["z"] > 0
    curves = np.genfromtxt(rep / "curves.csv", delimiter=",", names=True)
    checks = np.genfromtxt(rep / "residuals.csv", delimiter=",", names=True)
    assert len(curves) == 10 and {"lam_0", "mu", "z", "nll_1"} <= set(curves.dtype.names)
    np.testing.assert_array_equal(checks["step"], [20, 40, 60, 80, 100])
    assert checks["gap"][-1] == pytest.approx(res["gap"]) and (rep / "fit.png").read_bytes()[:4] == b"\x89PNG"
    assert res["z_holdout_m"] == [60, 60] and {"z_holdout", "z_target"} <= set(checks.dtype.names)
    assert np.isfinite(checks["z_holdout"]).all()


def test_threads_default_to_one_on_cpu(capsys, data):
    path, h = data
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        _run(capsys, ["fit", str(path), "--steps", "5", "--device", "cpu"])
        assert torch.get_num_threads() == 1
        _run(capsys, ["fit", str(path), "--steps", "5", "--device", "cpu", "--threads", "2"])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    from modular.cli import build_parser

    fit_help = build_parser()._subparsers._group_actions[0].choices["fit"].format_help()
    assert "default 1 on CPU" in fit_help


def test_sequence_gate_vocabulary_covers_expert_samples(capsys, tmp_path):
    """Expert samples with tokens the domain samples never show used to raise IndexError."""
    rng = np.random.default_rng(0)
    arrays = {}
    for k in range(2):
        arrays[f"logp_{k}"] = np.log(rng.dirichlet(np.ones(2), size=30))
        arrays[f"feat_{k}"] = rng.integers(0, 4, size=(30, 5))
        arrays[f"expert_logp_{k}"] = np.log(rng.dirichlet(np.ones(2), size=30))
        arrays[f"expert_feat_{k}"] = rng.integers(0, 9, size=(30, 5))
    arrays["expert_feat_1"][0, 0] = 8
    np.savez(tmp_path / "seq.npz", **arrays)
    code, out, err = _run(capsys, ["fit", str(tmp_path / "seq.npz"), "--gate", "sequence", "--steps", "10",
                                   "--json", "--adversary", "nll"])
    assert code in (0, 3), err
    assert _strict_json(out)["z_estimator"] == "importance"


@pytest.mark.parametrize("ids,message", [(-1, "negative"), (10 ** 9, "remap the ids")])
def test_bad_tabular_ids_exit_2(capsys, tmp_path, ids, message):
    D, P = finite_instance(12, 2, 0)
    path = _write(tmp_path / "d.npz", D, P, m=20)
    arrays = dict(np.load(path))
    arrays["feat_0"] = arrays["feat_0"].copy()
    arrays["feat_0"][3] = ids
    np.savez(path, **arrays)
    code, _, err = _run(capsys, ["fit", str(path), "--gate", "tabular", "--steps", "5"])
    assert code == 2 and err.count("\n") == 1 and message in err


def test_sigint_saves_and_exits_130_with_one_line(tmp_path, data):
    path, h = data
    ck = tmp_path / "fit.pt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "modular", "fit", str(path), "--entropy", h, "--steps", str(10 ** 7), "--gate",
         "tabular", "--checkpoint", str(ck), "--checkpoint-every", "50"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )
    deadline = time.time() + 120
    while not ck.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.count("\n") == 1 and "interrupted after step" in err and "checkpoint saved" in err
    step = torch.load(ck, weights_only=True)["step"]
    assert step >= 50 and f"step {step}:" in err


def test_validation_file_and_best_static_start(capsys, data, tmp_path):
    """--validation VAL.npz selects the returned check on its domains and measures the held-out Z
    on its expert samples; --start best-static begins at the exact best constant gate."""
    path, h = data
    D, P = finite_instance(12, 2, 0)
    val = _write(tmp_path / "val.npz", D, P, m=1000, seed=5)
    base = ["fit", str(path), "--entropy", h, "--steps", "300", "--check-every", "50", "--gate", "tabular"]
    code, out, _ = _run(capsys, base + ["--validation", str(val), "--start", "best-static", "--json"])
    res = _strict_json(out)
    assert code in (0, 3) and res["z_holdout_source"] == "validation" and res["z_holdout_m"] == [1000, 1000]
    assert res["z_holdout_fraction"] == 0.0 and res["selected_step"] in range(0, 301, 50)
    assert np.isfinite(res["validation_value"])
    code, out, _ = _run(capsys, base + ["--validation", str(val), "--report", str(tmp_path / "rep")])
    assert "on the validation expert samples" in out and "returned the check at step" in out
    checks = np.genfromtxt(tmp_path / "rep" / "residuals.csv", delimiter=",", names=True)
    np.testing.assert_array_equal(checks["step"], [0, 50, 100, 150, 200, 250, 300])
    assert np.isfinite(checks["validation"]).all()
    # Steps 0: the returned gate is the start, i.e. the best constant gate of the training samples.
    from modular.data import load_npz
    from modular.evaluate import best_static_for

    gate_file = tmp_path / "g.pt"
    code, out, _ = _run(capsys, ["fit", str(path), "--entropy", h, "--steps", "1", "--check-every", "1", "--gate",
                                 "tabular", "--start", "best-static", "--lr", "1e-12", "--save", str(gate_file),
                                 "--json"])
    w, _ = best_static_for(load_npz(path)[0], adversary="kl", entropies=np.array([float(v) for v in h.split(",")]))
    logits = load_gate(gate_file).gate.logits.detach().double()
    np.testing.assert_allclose(torch.softmax(logits, 1).numpy(), np.broadcast_to(w, (12, 2)), atol=1e-6)


@pytest.mark.parametrize("extra,needle", [
    (["--solver", "exact"], "--solver exact has none"),
    (["--z-holdout", "0.2"], "give one or the other"),
])
def test_validation_refusals_are_one_line(capsys, data, tmp_path, extra, needle):
    path, h = data
    D, P = finite_instance(12, 2, 0)
    val = _write(tmp_path / "val.npz", D, P, m=100, seed=5)
    code, out, err = _run(capsys, ["fit", str(path), "--entropy", h, "--gate", "tabular", "--validation", str(val)]
                          + extra)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_validation_with_other_p_is_refused(capsys, data, tmp_path):
    path, h = data
    D, P = finite_instance(12, 3, 0)
    val = _write(tmp_path / "val3.npz", D, P, m=100, seed=5)
    code, _, err = _run(capsys, ["fit", str(path), "--entropy", h, "--gate", "tabular", "--validation", str(val)])
    assert code == 2 and "p=3" in err
