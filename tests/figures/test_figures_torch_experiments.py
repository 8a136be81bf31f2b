"""Experiment functions that train torch models, on tiny configurations."""

import numpy as np
import pandas as pd

from synthetic.experiments.gradient_conflict import gradient_cosines
from synthetic.experiments.lambda_sweep import ORACLE, ROBUST, STATIC, lambda_sweep

TINY_SWEEP = {"V": 3, "T": 3, "noise": 0.05, "contamination": 0.25, "m": 64, "steps": 15, "expert_width": 8,
              "mono_width": 8, "large_width": 12, "points": 5, "oracle_points": 3, "seed": 0}


def test_lambda_sweep_table_and_robust_gate_dominates_static():
    res = lambda_sweep(TINY_SWEEP)
    df = pd.DataFrame(res["rows"])
    assert {"model", "lam0", "test_kl", "contamination", "seed", "parameters"} <= set(df.columns)
    models = set(df.model)
    assert {ROBUST, STATIC, ORACLE, "Group DRO", "DoReMi", "lam*-trained"} <= models
    assert (df.test_kl >= -1e-12).all() and np.isfinite(df.test_kl).all()
    worst = df.groupby("model").test_kl.max()
    # The robust gate minimises the worst case over all of G1, which contains every static gate.
    assert worst[ROBUST] <= worst[STATIC] + 1e-7
    assert abs(worst[ROBUST] - res["summary"]["robust_value"]) < 1e-6
    assert (df[df.model == ORACLE].lam0.values == [0, 0.5, 1]).all()
    assert np.isclose(sum(res["summary"]["lam_star"]), 1)
    assert len(res["checksums"]) == 2


def test_gradient_cosines_are_cosines():
    cfg = {"pair": "conflict", "V": 3, "T": 3, "noise": 0.05, "m": 64, "width": 8, "steps": 12, "every": 4, "seed": 0}
    df = pd.DataFrame(gradient_cosines(cfg)["rows"])
    assert list(df.step) == [0, 4, 8]
    assert ((df.cosine >= -1 - 1e-9) & (df.cosine <= 1 + 1e-9)).all()
    assert (df.loss_0 > 0).all() and (df.loss_1 > 0).all()
