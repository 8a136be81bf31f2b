"""The real-world experiment: parameter matching, the test mixtures, and a small end-to-end run."""

import numpy as np
import pytest

from modular.primal_dual import TOL_Z
from synthetic import corpora
from synthetic.experiments import real_world as rw

pytestmark = pytest.mark.skipif(set(corpora.REAL_GENRES) - set(corpora.available_genres()),
                                reason="a Debian package of the real-text genres is missing")


def test_test_mixtures_are_vertices_midpoints_centre_and_one_skewed():
    m = rw.test_mixtures(4)
    assert m.shape == (12, 4)
    np.testing.assert_allclose(m.sum(axis=1), 1.0)
    assert sum(np.isclose(row.max(), 1.0) for row in m) == 4
    assert sum(np.isclose(np.sort(row)[-2:], 0.5).all() for row in m) == 6
    assert len({tuple(np.round(r, 12)) for r in m}) == 12


@pytest.mark.parametrize("width,T", [(16, 64), (64, 32), (128, 256)])
def test_monolithic_width_matches_experts_plus_gate_within_5_percent(width, T):
    p, gate = 4, 2500
    target = p * rw.transformer_parameters(width, T) + gate
    matched = rw.transformer_parameters(rw.matched_width(target, T), T)
    assert abs(matched - target) <= rw.PARAMETER_MATCH * target
    # A false variant (the experts' own width) misses by far: the check can fail.
    assert abs(rw.transformer_parameters(width, T) - target) > rw.PARAMETER_MATCH * target


SMOKE = dict(genres=list(corpora.REAL_GENRES), T=16, T_sweep=[8], expert_width=8, gate_embed=4, gate_hidden=4,
             train_windows=400, train_fraction=0.5, steps=30, batch_size=16, lr=1e-2, m_val=150, m_test=100,
             m_expert=150, fit_steps=2000, fit_batch=None, fit_lr=0.02, lam_lr=0.1, router_samples=80,
             router_steps=20, seed=0, subsample=0)


@pytest.fixture(scope="module")
def smoke():
    return rw.real_world(SMOKE)


def test_smoke_run_is_finite_and_complete(smoke):
    models = {r["model"] for r in smoke["rows"]}
    assert {rw.GATE, rw.UNIFORM, rw.BEST_STATIC, rw.POSTERIOR, rw.POSTERIOR_RAW, rw.ROUTED, rw.MONO_EVEN, rw.MONO_DOREMI,
            rw.MONO_LAMSTAR} <= models
    assert len(smoke["rows"]) == 12 * len(models)
    assert all(np.isfinite(r["nll_per_byte"]) and 0 < r["nll_per_byte"] < np.log(256) * 2 for r in smoke["rows"])
    assert {r["T"] for r in smoke["sweep"]} == {8, 16}
    np.testing.assert_allclose(sum(smoke["lam"]), 1.0)


def test_smoke_gate_mass_is_within_the_fits_tolerance(smoke):
    # Full-batch fit on 150 windows a set: the unbiased Z of the returned gate, on the whole sets.
    assert abs(smoke["z"] - 1) <= TOL_Z


def test_parameter_counts_of_the_run(smoke):
    params = smoke["parameters"]
    frozen = params[rw.GATE]["frozen"] + params[rw.GATE]["trainable"]
    assert abs(params[rw.MONO_EVEN]["trainable"] - frozen) <= rw.PARAMETER_MATCH * frozen
    assert params[rw.GATE]["trainable"] < 0.25 * params[f"expert {corpora.REAL_GENRES[0]}"]["frozen"]


def test_posterior_gate_scores_are_consistent(smoke):
    # Renormalising by Z shifts every window's log-probability by log Z.
    rows = {(r["model"], r["mixture"]): r["nll_per_byte"] for r in smoke["rows"]}
    mix = rw.lam_label(np.eye(4)[0])
    shift = rows[(rw.POSTERIOR, mix)] - rows[(rw.POSTERIOR_RAW, mix)]
    np.testing.assert_allclose(shift, np.log(smoke["z_posterior"]) / SMOKE["T"], rtol=1e-9)
    assert 1 <= smoke["z_posterior"] <= 4 + 1e-9  # g = posterior over p experts has mass in [1, p]


def test_same_seed_same_numbers(smoke):
    again = rw.real_world(dict(SMOKE))
    assert [r["nll_per_byte"] for r in again["rows"]] == [r["nll_per_byte"] for r in smoke["rows"]]
