"""The learned transformer gate against the exact tabular robust gate; the transformer gate's file round trip."""

import pytest
import torch

from modular import load_gate, make_gate, save_gate
from synthetic.experiments.paper_scale import small_v_reference

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
