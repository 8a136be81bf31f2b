"""Experiment functions built on modular/ (primal-dual fit, distillation), on tiny configurations."""

import numpy as np
import pandas as pd
import torch

from synthetic.experiments.distillation import distillation
from synthetic.experiments.dynamics import primal_dual_dynamics
from synthetic.experiments.gaussian_mixture import gate_on_grid, gaussian_mixture_robust, grid_cells
from synthetic.gaussian import Grid, grid_instance, random_mixture
from synthetic.experiments.real_text import sample_windows, text_nll
from synthetic.ngram import NGramModel


def test_dynamics_history_and_reference():
    cfg = {"V": 3, "T": 3, "noise": 0.05, "contamination": 0.25, "order": 2, "m_expert": 200, "m": 300,
           "adversary": "kl", "steps": 40, "batch_size": 64, "lr": 0.05, "lr_schedule": "constant", "lam_lr": 0.1,
           "seed": 0}
    res = primal_dual_dynamics(cfg)
    df = pd.DataFrame(res["rows"])
    assert list(df.columns) == ["adversary", "seed", "step", "lam0", "mu", "z", "z_ema"]
    assert df.step.iloc[-1] == 40 and ((df.lam0 >= 0) & (df.lam0 <= 1)).all() and (df.z > 0).all()
    f = res["final"]
    assert 0 <= f["lam_star0"] <= 1 and f["value_exact"] > 0
    # The exact value is the minimum over G1; the fitted gate, renormalised, cannot beat it.
    assert f["value_fit_population"] >= f["value_exact"] - 1e-9
    assert f["z_estimator"] == "importance"


def test_distillation_routers_and_exact_references():
    cfg = {"V": 3, "T": 3, "noise": 0.05, "order": 2, "m": 300, "n_samples": 500, "router_steps": 30,
           "mono_width": 8, "mono_steps": 10, "points": 3, "seed": 0}
    res = distillation(cfg)
    s = res["summary"]
    # The optimal router minimises KL(pi_g || rho) over all causal routers.
    assert 0 <= s["kl_gate_to_routed (optimal router)"] <= s["kl_gate_to_routed (Bayes router)"] + 1e-9
    assert s["kl_gate_to_routed (optimal router)"] <= s["kl_gate_to_routed (learned router)"] + 1e-9
    df = pd.DataFrame(res["rows"])
    assert {"robust gate", "routed (learned router)", "routed (Bayes router)", "monolithic w8 (even)"} <= set(df.model)
    assert (df.test_kl >= -1e-12).all()


def test_gaussian_mixture_exact_and_fit():
    cfg = {"p": 2, "components": 2, "expert_components": 1, "spread": 2.0, "m_fit": 200, "m": 300,
           "m_entropy": 2000, "grid": [-7.0, 7.0, 80], "steps": 30, "batch_size": 64, "lr": 0.01,
           "lr_schedule": "constant", "lam_lr": 0.1, "seed": 0}
    res = gaussian_mixture_robust(cfg)
    df = pd.DataFrame(res["rows"])
    assert len(df) == 2 and np.isclose(df.lam_star.sum(), 1)
    # The robust value is max_k KL(D_k || q*), and lam* only weighs domains attaining it.
    assert np.isclose(df.robust_kl_exact_grid.max(), df.robust_value_exact_grid.iloc[0], atol=1e-8)
    active = df[df.lam_star > 1e-6]
    np.testing.assert_allclose(active.robust_kl_exact_grid, df.robust_value_exact_grid.iloc[0], atol=1e-6)
    # The fitted gate scored on the grid: a gated model of the grid's experts, so its Z is near one
    # and, renormalised, it cannot beat the exact robust value on the same grid.
    assert (df.robust_value_primal_dual_population >= df.robust_value_exact_grid - 1e-9).all()
    assert (df.robust_value_exact_from_samples >= df.robust_value_exact_grid - 1e-9).all()
    assert 0.5 < df.z_fit_population.iloc[0] < 2
    curves = pd.DataFrame(res["curves"])
    assert len(curves) == 80 and (curves.robust_gate >= 0).all()
    width = 14.0 / 80
    assert 0.95 < curves.domain_0.sum() * width < 1.0 + 1e-9


def test_grid_cells_bin_samples_into_the_instance_cells():
    d = random_mixture(1, 2, seed=3, spread=2.0)
    grid = Grid.regular(-2.0, 2.0, 8)
    inst = grid_instance([d], [d], grid)
    x = d.sample(200_000, 5)
    freq = np.bincount(grid_cells(x, grid), minlength=inst.D.shape[1]) / len(x)
    assert freq.shape == (10,)
    np.testing.assert_allclose(freq, inst.D[0], atol=5e-3)  # tails included: cell 0 and cell 9


class _ConstantGate(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.as_tensor(logits, dtype=torch.float64))

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1)


def test_gate_on_grid_of_a_constant_gate_is_the_mixture():
    experts = [random_mixture(1, 1, seed=s, spread=2.0) for s in (1, 2)]
    inst = grid_instance(experts, experts, Grid.regular(-4.0, 4.0, 50))
    w = np.array([0.3, 0.7])
    q = gate_on_grid(_ConstantGate(np.log(w)), inst)
    np.testing.assert_allclose(q, w @ inst.P, atol=1e-12)
    assert np.isclose(q.sum(), 1.0)


def test_sample_windows_follow_the_model():
    rng = np.random.default_rng(0)
    model = NGramModel(4, 2, name="toy").fit(rng.integers(0, 4, size=(50, 6)))
    x = sample_windows(model, 4000, 1, seed=1)
    freq = np.bincount(x[:, 0], minlength=4) / 4000
    np.testing.assert_allclose(freq, model.next_token_probs(np.zeros((1, 0), dtype=np.int64))[0], atol=0.03)


def test_real_text_table():
    cfg = {"domains": ["docs", "code", "notes"], "order": 2, "T": 16, "max_train_bytes": 20000,
           "train_fraction": 0.5, "m_val": 100, "m_test": 100, "m_expert": 50, "steps": 10, "batch_size": 32,
           "lr": 0.05, "lr_schedule": "constant", "lam_lr": 0.5, "mixtures": [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]],
           "seed": 0}
    res = text_nll(cfg)
    df = pd.DataFrame(res["rows"])
    assert {"model", "mixture", "seed", "nll_per_byte"} == set(df.columns)
    assert {"robust gate", "uniform static gate", "expert docs", "monolithic 2-gram", "monolithic 3-gram"} <= set(df.model)
    assert ((df.nll_per_byte > 0) & (df.nll_per_byte < np.log(256))).all()
    alone = df[df.mixture == "1;0;0"].set_index("model").nll_per_byte
    assert alone["expert docs"] < alone["expert code"]  # each expert is best on its own genre
    assert len(res["checksums"]) == 9 and np.isclose(sum(res["lam"]), 1)
    # The gates' excess over each domain's expert on the validation windows, nats per byte.
    for gate in ("robust gate", "uniform static gate"):
        assert len(res["val_excess"][gate]) == 3 and np.isfinite(res["val_excess"][gate]).all()
    # A mixture of experts gives each window at least 1/p of its own expert's probability.
    assert max(res["val_excess"]["uniform static gate"]) <= np.log(3) / 16 + 1e-12
