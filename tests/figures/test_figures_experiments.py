"""Each figure's experiment function on a tiny configuration: columns and sane values."""

import numpy as np
import pandas as pd
import pytest

from synthetic.experiments.common import lambda_grid
from synthetic.experiments.phase import phase_point
from synthetic.experiments.thm3_bound import REGIMES, thm3_curves


@pytest.mark.parametrize("regime", REGIMES)
def test_thm3_bound_holds_and_robust_beats_static(regime):
    res = thm3_curves({"regime": regime, "p": 3, "n": 12, "seed": 1, "points": 6, "quality": 0.4})
    df = pd.DataFrame(res["rows"])
    assert {"lam0", "robust_kl", "bound", "slack", "static_sigma_kl", "jsd", "robust_value"} <= set(df.columns)
    assert len(df) == 3 + 1 + 6
    assert (df.slack >= -1e-7).all()
    # The robust value bounds every mixture's KL (it is the max over the simplex).
    assert (df.robust_kl <= df.robust_value + 1e-8).all()
    assert df.robust_kl.max() <= df.static_sigma_kl.max() + 1e-8
    assert len(res["checksums"]) == 1


def test_lambda_grid_shapes():
    g = lambda_grid(2, 5)
    np.testing.assert_allclose(g[:, 0], [0, 0.25, 0.5, 0.75, 1])
    g3 = lambda_grid(3, 4, seed=2)
    assert g3.shape == (3 + 1 + 4, 3) and np.allclose(g3.sum(axis=1), 1)


def test_phase_point_exact_experts_beat_monolithic_on_the_conflict_task():
    row = phase_point({"V": 3, "T": 3, "noise": 0.05, "expert_noise": 0.0, "order": 2})["rows"][0]
    assert row["eps_max"] < 1e-9
    # With perfect experts the robust value is the capacity of k -> D_k, at most log 2.
    assert row["modular_worst"] <= np.log(2) + 1e-8
    assert row["monolithic_worst"] >= row["jsd_half"] - 1e-9  # Thm 6: KL_k average >= JSD
    assert row["diff_worst"] < -0.1
    noisy = phase_point({"V": 3, "T": 3, "noise": 0.05, "expert_noise": 0.9, "order": 2})["rows"][0]
    assert noisy["eps_max"] > row["eps_max"] and noisy["modular_worst"] > row["modular_worst"]


def test_generalisation_point_gap_and_bound():
    from synthetic.experiments.generalisation import generalisation_point

    cfg = {"regime": "random", "p": 2, "n": 16, "quality": 0.3, "instance_seed": 0, "draws": 20, "delta": 0.05,
           "m": 50, "cells": 4, "seed": 0}
    df = pd.DataFrame(generalisation_point(cfg)["rows"])
    assert len(df) == 2 and (df.bound > 0).all() and np.isfinite(df.gap).all()
    np.testing.assert_allclose(df.gap, df.population_ce - df.empirical_ce)
    one = pd.DataFrame(generalisation_point({**cfg, "cells": 1})["rows"])
    assert (one.rademacher < df.rademacher).all()  # one cell: the smallest gate class
