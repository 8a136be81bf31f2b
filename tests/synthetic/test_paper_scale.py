"""The learned transformer gate against the exact tabular robust gate; the transformer gate's file round trip."""

import json

import numpy as np
import pytest
import torch

from modular import load_gate, make_gate, save_gate
from synthetic.conflict_exact import ConflictCounts
from synthetic.experiments.paper_scale import (GATE, STATIC, ScoringStrata, gate_log_weights, next_log_probs,
                                               small_v_reference, work_items)
from synthetic.finite import exact_kl
from synthetic.markov import conflict_task, contaminated
from synthetic.models import TorchSequenceModel
from theory import kl


def json_key(item: dict) -> str:
    return json.dumps(item, sort_keys=True)

SMALL = {"V": 5, "T": 4, "noise": 0.05, "contamination": 0.0, "m": 2000, "expert_steps": 150, "lr": 2e-2,
         "expert_width": 8, "gate_m": 4000, "gate_steps": 400, "gate_batch": 64, "gate_lr": 0.02,
         "gate_schedule": "constant", "lam_lr": 0.1, "mu_lr": 0.05, "penalty": 1.0, "z_decay": 0.9, "log_every": 10,
         "seed": 0}


def test_learned_transformer_gate_is_within_005_nats_of_the_exact_tabular_gate():
    s = small_v_reference(SMALL)["summary"]
    assert s["solver_status"] == "optimal"
    # The exact robust gate is optimal over all gates, so the learned one can only be worse ...
    assert s["gap"] >= -1e-9
    # ... and the fit (samples only, a 6-wide transformer) stays within 0.05 nats of it.
    assert s["gap"] <= 0.05
    assert s["learned_z"] == pytest.approx(1.0, abs=0.02)


def test_transformer_gate_file_round_trip(tmp_path):
    torch.manual_seed(0)
    gate = make_gate("transformer", 3, vocab=11, length=6)
    x = torch.randint(0, 11, (5, 6))
    save_gate(tmp_path / "g.pt", gate, meta={"note": "test"})
    loaded = load_gate(tmp_path / "g.pt")
    assert loaded.kind == "transformer" and loaded.meta == {"note": "test"}
    with torch.no_grad():
        assert torch.allclose(loaded.gate(x), gate.eval()(x), atol=1e-6)
    with pytest.raises(Exception, match="T <= 6"):
        gate(torch.randint(0, 11, (2, 7)))


def _small_models():
    V, T = 5, 4
    A, B = conflict_task(V, T, 0.1)
    A = contaminated(A, B, 0.25)
    experts = [TorchSequenceModel(V, T, 8, seed=k).fit([d.sample(500, k)], steps=30) for k, d in enumerate((A, B))]
    mono = TorchSequenceModel(V, T, 8, seed=3).fit([A.sample(500, 5), B.sample(500, 6)], steps=30)
    torch.manual_seed(0)
    gate = make_gate("transformer", 2, vocab=V, length=T)
    return A, B, experts, mono, gate


def test_stratified_rao_blackwell_and_control_variate_scores_cover_the_exact_kl():
    A, B, experts, mono, gate = _small_models()
    counts = ConflictCounts(5, 4, 0.1, 0.25)
    outcomes, D0 = A.enumerate()
    D = np.vstack([D0, np.exp(B.log_prob(outcomes))])
    P = np.vstack([np.exp(e.log_prob(outcomes)) for e in experts])
    g = np.exp(gate_log_weights(gate, outcomes))
    q_gate = np.einsum("nk,kn->n", g, P)
    z = q_gate.sum()
    w = 0.3
    exact = {"mono": np.array([exact_kl(d, mono) for d in (A, B)]), "gate": kl(D, q_gate / z),
             "static": kl(D, w * P[0] + (1 - w) * P[1]), "expert A": kl(D, P[0])}
    zs = []
    for seed in range(6):
        strata = ScoringStrata(counts, 1500, seed, enumerate_up_to=20)
        assert 0 < strata.complete.sum() < counts.n_classes
        got = {"mono": strata.factored(lambda x: next_log_probs(mono, x))}
        gated = strata.gated(experts, gate, w, float(np.log(z)), 0.0)
        got |= {"gate": gated[GATE], "static": gated[STATIC], "expert A": gated["expert A alone"]}
        for name, score in got.items():
            assert (score.se > 0).all()
            zs += list((score.kl - exact[name]) / score.se)
    zs = np.array(zs)
    assert np.abs(zs).max() < 4.5 and abs(zs.mean()) < 0.6
    # Every class enumerated: exact up to the float32 forward pass, with zero standard error.
    strata = ScoringStrata(counts, 10, 0, enumerate_up_to=10**6)
    gated = strata.gated(experts, gate, w, float(np.log(z)), 0.0)
    assert np.allclose(gated[GATE].kl, exact["gate"], atol=1e-4) and (gated[GATE].se == 0).all()
    assert np.allclose(strata.factored(lambda x: next_log_probs(mono, x)).kl, exact["mono"], atol=1e-4)
    # The control variate's known mean matters: the residual log f - log q alone misses by KL(D || f).
    residual = gated[GATE].kl - gated[STATIC].kl
    assert np.abs(residual - exact["gate"]).min() > 0.05


def test_monolithic_trainings_are_shared_where_they_coincide():
    cfg = {"V": 100, "T": 8, "noise": 0.05, "m": 10, "steps": 1, "lr": 0.01, "seed": 0, "mc": 10,
           "enumerate_up_to": 10, "mono_width": 16, "large_width": 20, "oracle_points": 3}
    items = work_items([{**cfg, "contamination": r} for r in (0.0, 0.25, 0.5)])
    mono = [i for i in items if i["item"] == "monolithic"]
    zero = [i for i in mono if i.get("lam0") == 0.0]
    assert len(zero) == 2 and all(i["score_contaminations"] == [0.0, 0.25, 0.5] and i["train_contamination"] == 0
                                  for i in zero)
    # 2 widths x (0.5, 1.0) x 3 rates + the 2 shared lam_A = 0 + Group DRO per rate; the even mixture is the Oracle at 1/2.
    assert len(mono) == 2 * 2 * 3 + 2 + 3
    assert len({json_key(i) for i in items}) == len(items)
