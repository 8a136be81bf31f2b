"""The whole chain on tiny Hugging Face experts: cache -> fit -> evaluate -> distill -> generate, offline."""

import json

import numpy as np
import pytest
import torch

from modular.cache import gate_meta
from modular.cli import main
from modular.data import load_npz
from modular.evaluate import excess_instance
from modular.gate_io import save_gate
from modular.gates import make_gate
from modular.primal_dual import fit_robust_gate
from tests.modular.hf_fixtures import write_domains
from theory import solve_robust

NAMES = ("scripture", "code", "news")


def _json(capsys):
    out = capsys.readouterr().out
    return json.loads(out)


def test_chain_from_text_and_models_to_generation(hf_models, tmp_path, capsys):
    pytest.importorskip("transformers")
    paths = write_domains(tmp_path / "text")
    experts = [a for n, d in zip(NAMES, hf_models) for a in ("--expert", f"{n}=hf:{d}")]
    domains = [a for n in NAMES for a in ("--domain", f"{n}={paths[n]}")]
    out = tmp_path / "cache"

    assert main(["cache", *experts, *domains, "--window", "12", "--expert-samples", "48", "--split", "6:2:2",
                 "--out", str(out), "--quiet", "--json"]) == 0
    cache = _json(capsys)
    assert cache["complete"] and cache["counts"]["expert_samples"]["train"] == 48

    data = out / "DATA.npz"
    doms, samples = load_npz(data)
    with np.load(data, allow_pickle=False) as f:
        vocab = int(f["vocab_size"])
    torch.manual_seed(0)
    gate = make_gate("sequence", 3, vocab=vocab)
    res = fit_robust_gate(gate, doms, samples, adversary="excess", steps=150, lr=0.005, batch_size=64)
    save_gate(out / "gate.pt", res.gate, meta=gate_meta(data, res.summary(), kind="sequence"))

    # the command line's fit writes the same kind of gate file (sequence gate sized on expert samples too)
    # 20 steps do not converge: the fit says so (exit 3) and still saves the gate it has.
    code = main(["fit", str(data), "--gate", "sequence", "--adversary", "excess", "--steps", "20", "--json",
                 "--save", str(out / "cli_gate.pt")])
    assert code == {"converged": 0, "not_converged": 3}[_json(capsys)["status"]]
    assert main(["evaluate", str(out / "cli_gate.pt"), str(out / "TEST.npz"), "--json"]) == 0
    assert _json(capsys)["experts"] == list(NAMES)

    assert main(["evaluate", str(out / "gate.pt"), str(out / "TEST.npz"), "--json", "--report",
                 str(tmp_path / "report")]) == 0
    ev = _json(capsys)
    rows = {r["method"]: r for r in ev["methods"]}
    assert len(ev["mixtures"]) == 7 and ev["window"] == 12
    # the best static gate is theory's robust constant gate on the same cached values
    test_doms, _ = load_npz(out / "TEST.npz")
    D, P, log_c = excess_instance([d.logp.numpy() for d in test_doms])
    ref = solve_robust(D, P, family="constant", solver="cvxpy")
    assert ev["best_static"]["worst_excess"] == pytest.approx((ref.value - log_c) / 12, abs=1e-6)
    assert np.allclose(ev["best_static"]["w"], ref.gate[0], atol=1e-3)
    assert rows["best static"]["worst_excess"] <= rows["uniform static"]["worst_excess"] + 1e-12
    assert (tmp_path / "report" / "evaluation.png").exists()

    assert main(["distill", str(out / "gate.pt"), str(data), "--save", str(out / "router.pt"), "--steps", "60",
                 "--json"]) == 0
    dist = _json(capsys)
    assert dist["accepted"] > 0 and dist["candidates"] == 3 * 48

    assert main(["generate", str(out / "router.pt"), *experts, "--n", "3", "--length", "8", "--json"]) == 0
    gen = _json(capsys)
    assert gen["mode"] == "routed" and len(gen["samples"]) == 3
    assert all(len(s["tokens"]) == 8 and max(s["tokens"]) < vocab for s in gen["samples"])
    assert main(["generate", str(out / "router.pt"), *experts, "--n", "2", "--exact", "--json"]) == 0
    exact = _json(capsys)
    assert exact["mode"] == "exact" and len(exact["samples"][0]["tokens"]) == 12 and 0 < exact["acceptance"] <= 1

    # bad input: one line, status 2
    swapped = experts[2:4] + experts[0:2] + experts[4:]
    bad = [
        ["generate", str(out / "router.pt"), *swapped, "--n", "1"],
        ["cache", *experts, *domains, "--window", "100", "--out", str(tmp_path / "long"), "--quiet"],
        ["distill", str(out / "gate.pt"), str(tmp_path / "missing.npz"), "--save", str(tmp_path / "r.pt")],
    ]
    for argv in bad:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
