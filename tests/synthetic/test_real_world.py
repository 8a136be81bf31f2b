"""The real-world experiment: parameter matching, the test mixtures, and a small end-to-end run."""

import math

import numpy as np
import pytest

from modular.primal_dual import status_of
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


def test_matched_width_prefers_a_vector_aligned_width_within_one_percent():
    # The full profile's target (4 experts of width 256 and a 53,140-parameter gate, T = 256): the
    # closest multiple of the 2 heads is 546 (+0.08%); 544, a multiple of 16, is within 1% (-0.6%).
    T, target = 256, 4 * rw.transformer_parameters(256, 256) + 53140
    # The count grows with the width, so the closest width is next to the crossing, inside (520, 572).
    assert rw.transformer_parameters(520, T) < target < rw.transformer_parameters(572, T)
    closest = min(range(520, 574, 2), key=lambda w: abs(rw.transformer_parameters(w, T) - target))
    assert closest == 546 and rw.matched_width(target, T) == 544
    assert abs(rw.transformer_parameters(544, T) - target) <= rw.ALIGNED_MATCH * target
    # No aligned width within 1% (the quick profile's 51,430 at T = 32): the closest width, 46.
    assert rw.matched_width(51430, 32) == min(range(2, 200, 2), key=lambda w: abs(rw.transformer_parameters(w, 32)
                                                                                   - 51430)) == 46


SMOKE = dict(genres=list(corpora.REAL_GENRES), T=16, T_sweep=[8], expert_width=8, gate_width=4, train_windows=400,
             train_fraction=0.5, steps=30, batch_size=16, lr=1e-2, cache_windows=300, excerpt_windows=2,
             cache_split=(0.4, 0.2, 0.4), m_expert=200, fit_steps=200, fit_batch=32, fit_lr=0.003,
             lr_schedule="cosine", gate_iterate="poly", lam_lr=4.0, mu_lr=1 / 64, mu0=0.0, tol_per_byte=0.001,
             fit_weight_decay=0.0, check_every=50, router_steps=20, seed=0, subsample=0)


@pytest.fixture(scope="module")
def smoke_and_calls():
    """One smoke run, with the ``python -m modular`` commands it ran in-process."""
    calls = []
    real_main = rw.cli.main

    def recording(argv):
        calls.append(list(argv))
        return real_main(argv)

    rw.cli.main = recording
    try:
        return rw.real_world(SMOKE), calls
    finally:
        rw.cli.main = real_main


@pytest.fixture(scope="module")
def smoke(smoke_and_calls):
    return smoke_and_calls[0]


def test_smoke_run_goes_through_the_command_line(smoke_and_calls):
    # The router by `python -m modular distill`, the scores by `python -m modular evaluate` at each T.
    calls = smoke_and_calls[1]
    assert [c[0] for c in calls] == ["distill", "evaluate", "evaluate"]
    assert all(c[2].endswith(("DATA.npz", "TEST.npz", "TEST_T8.npz")) for c in calls)


def test_smoke_run_is_finite_and_complete(smoke):
    models = {r["model"] for r in smoke["rows"]}
    assert {rw.GATE, rw.UNIFORM, rw.BEST_STATIC, rw.POSTERIOR, rw.POSTERIOR_RAW, rw.ROUTED, rw.MONO_EVEN, rw.MONO_DOREMI,
            rw.MONO_LAMSTAR} <= models
    assert len(smoke["rows"]) == 12 * len(models)
    assert all(np.isfinite(r["nll_per_byte"]) and 0 < r["nll_per_byte"] < np.log(256) * 2 for r in smoke["rows"])
    assert {r["T"] for r in smoke["sweep"]} == {8, 16}
    np.testing.assert_allclose(sum(smoke["lam"]), 1.0)


def test_smoke_fit_status_follows_its_residuals(smoke):
    # The status reported for every window length is the one its residuals give, against one accuracy
    # per byte (gap within T x 0.001 nats, |log Z| within T x 0.001: rw.tolerances).
    for T, f in smoke["fits"].items():
        tol_gap, tol_z = rw.tolerances(SMOKE, int(T))
        assert f["tol_gap"] == pytest.approx(tol_gap) and f["tol_z"] == pytest.approx(tol_z)
        within = (f["gap"] <= tol_gap and abs(f["z"] - f["z_target"]) <= tol_z
                  and abs(f["z_holdout"] - 1) + 2 * f["z_holdout_se"] <= tol_z)
        assert f["status"] == ("converged" if within else "not_converged")
        assert f["status"] == status_of(f["gap"], f["z"], tol_gap, tol_z, z_target=f["z_target"],
                                        z_holdout=f["z_holdout"], z_holdout_se=f["z_holdout_se"])
        assert f["selected_step"] is not None and np.isfinite(f["validation_value"])


def test_tolerances_are_one_accuracy_per_byte():
    gap, z = rw.tolerances({"tol_per_byte": 0.001}, 256)
    assert gap == pytest.approx(0.256) and z == pytest.approx(math.expm1(0.256))
    # Renormalising a gate of mass 1 + tol_z moves its NLL per byte by exactly the tolerance.
    assert math.log1p(z) / 256 == pytest.approx(0.001)


def test_smoke_gate_mass_is_within_the_fits_tolerance(smoke):
    """The returned gate's Z, on expert samples it was not fitted on (the validation split's), is
    within the fit's tolerance; on the test split's expert samples within it up to two standard errors."""
    f = smoke["fits"][str(SMOKE["T"])]
    assert abs(f["z_holdout"] - 1) + 2 * f["z_holdout_se"] <= f["tol_z"]
    assert abs(smoke["z_test"] - 1) <= f["tol_z"] + 2 * smoke["z_test_se"]


def test_cache_counts_are_the_excerpts(smoke):
    counts = smoke["cache_counts"]
    for g in corpora.REAL_GENRES:
        n = sum(counts["windows"][g].values())
        assert SMOKE["cache_windows"] <= n <= SMOKE["cache_windows"] + 8  # the last excerpt overshoots
        assert all(counts["windows"][g][s] > 0 for s in ("train", "val", "test"))


def test_latin1_bytes_round_trip_every_byte():
    tok = rw.Latin1Bytes()
    raw = bytes(range(256))
    assert tok.encode(raw.decode("latin-1")) == list(raw)
    assert tok.decode(list(raw)).encode("latin-1") == raw


def test_excerpts_one_per_document_inside_it():
    docs = [np.frombuffer(bytes([i]) * (10 + 7 * i), dtype=np.uint8) for i in range(1, 30)]

    class Split:
        pass

    split = Split()
    split.docs = docs
    out = rw.held_out_excerpts([split], 4, 20, 2, np.random.default_rng(0))
    # Each excerpt is a whole number of windows from one document: one repeated byte.
    assert all(len(e) % 4 == 0 and len(set(e)) == 1 for e in out)
    assert len({e[0] for e in out}) == len(out)
    assert sum(len(e) // 4 for e in out) >= 20


def test_prefix_split_sums_the_first_factors(tmp_path):
    from modular.cache import write_npz

    rng = np.random.default_rng(1)
    tlp = -rng.random((5, 6, 2))
    write_npz(tmp_path / "a.npz", {"feat_0": rng.integers(0, 9, (5, 6)), "token_logp_0": tlp,
                                   "logp_0": tlp.sum(axis=1), "window": np.array(6)})
    rw.prefix_split(tmp_path / "a.npz", tmp_path / "b.npz", 3)
    with np.load(tmp_path / "b.npz", allow_pickle=False) as f:
        np.testing.assert_allclose(f["logp_0"], tlp[:, :3].sum(axis=1))
        assert f["feat_0"].shape == (5, 3) and int(f["window"]) == 3
        assert not np.allclose(f["logp_0"], tlp.sum(axis=1))


def test_parameter_counts_of_the_run(smoke):
    params = smoke["parameters"]
    frozen = params[rw.GATE]["frozen"] + params[rw.GATE]["trainable"]
    assert abs(params[rw.MONO_EVEN]["trainable"] - frozen) <= rw.PARAMETER_MATCH * frozen
    # At these toy sizes the gate's byte embedding alone is a fifth of an expert; see the profiles' test.
    assert params[rw.GATE]["trainable"] < 0.3 * params[f"expert {corpora.REAL_GENRES[0]}"]["frozen"]


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
