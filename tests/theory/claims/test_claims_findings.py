"""The sharpened findings of the audit, on the instances that state them."""

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.bounds import expert_errors, hull_lipschitz_constant, static_barrier, static_weights
from theory.claims import distillation as dist
from theory.claims.fixed import check_thm14, no_cross_domain_mass
from theory.claims.generalisation import simplex_lattice, worst_partition_gap, wide_hull_instance
from theory.claims.instances import Instance, make_instance
from theory.claims.readme import BEGIN, END, current_block, render, replace_block
from theory.claims.registry import HARMLESS_LEAK, LOG_P_COUNTEREXAMPLE, ONE_WAY_LEAK
from theory.claims.robust import check_thm3_ensemble, check_thm3_regimes, mean_domain_in_hull
from theory.divergences import kl
from theory.errors import InputError
from theory.gates import constant_gate, pointwise_hull

ROOT = Path(__file__).resolve().parents[3]


def by_part(checks):
    out = {}
    for c in checks:
        out.setdefault(c.part, []).append(c)
    return out


def fixed(D, P):
    return Instance(D=np.asarray(D, dtype=float), P=np.asarray(P, dtype=float), regime="fixed")


def test_thm14_leak_onto_unused_outcomes_is_harmless():
    """30% of each expert on an outcome no domain uses: still exactly LSE(eps), at softmax(eps)."""
    inst = fixed(*HARMLESS_LEAK)
    assert no_cross_domain_mass(inst.D, inst.P)
    checks = by_part(check_thm14(inst))
    barrier = checks["best static worst-case KL >= log sum exp(eps)"][0]
    eps = expert_errors(inst.D, inst.P)
    assert barrier.truth == pytest.approx(static_barrier(eps), abs=1e-7)
    np.testing.assert_allclose(kl(inst.D, static_weights(eps) @ inst.P), static_barrier(eps), atol=1e-12)
    assert barrier.meets_assumption and not barrier.violated and barrier.variant_violated
    assert not checks["sigma = softmax(eps) is the best static gate"][0].violated


def test_thm14_one_way_leak_breaks_the_barrier():
    """Only expert 1 puts mass on domain 2's support: the best static gate beats LSE(eps)."""
    inst = fixed(*ONE_WAY_LEAK)
    assert not no_cross_domain_mass(inst.D, inst.P)
    barrier = by_part(check_thm14(inst))["best static worst-case KL >= log sum exp(eps)"][0]
    assert barrier.violated and barrier.meets_assumption is False
    assert barrier.truth < static_barrier(expert_errors(inst.D, inst.P)) - 0.1


def test_no_cross_domain_mass():
    D = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    assert no_cross_domain_mass(D, np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]))
    assert not no_cross_domain_mass(D, np.array([[0.5, 0.4, 0.1], [0.0, 0.0, 1.0]]))
    overlapping = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]])
    assert not no_cross_domain_mass(overlapping, overlapping)


def test_thm3_regimes_log_p_counterexample():
    """pi_k >= D_k/2 on disjoint domains, but min_j pi_j(x2) = 0.2 > Dbar(x2) = 0.05: value 0.7903 > log 2."""
    inst = fixed(*LOG_P_COUNTEREXAMPLE)
    assert (inst.P >= inst.D / 2).all() and not mean_domain_in_hull(inst.D, inst.P)
    checks = by_part(check_thm3_regimes(inst, np.eye(2)))
    summarised = checks["disjoint domains, pi_k >= D_k/p: robust value <= log p (as summarised)"][0]
    assert summarised.truth == pytest.approx(0.7903, abs=1e-4)
    assert summarised.violated and summarised.meets_assumption is False
    assert not checks["disjoint domains: robust value >= log p"][0].violated
    floor = checks["disjoint domains, mean domain outside the hull: value >= log p + min_G1 KL(Dbar||q)"][0]
    assert not floor.violated and floor.bound > np.log(2) + 1e-3


@pytest.mark.parametrize("seed", range(4))
def test_thm3_regimes_exact_condition(seed):
    """Disjoint domains: value >= log p, and = log p exactly when the mean domain is in the hull."""
    inst = make_instance("disjoint-broad", 2, 4, (0.05, 1.0)[seed % 2], np.random.default_rng(seed))
    checks = check_thm3_regimes(inst, np.eye(2))
    assert not any(c.violated for c in checks if c.meets_assumption is not False)
    in_hull = mean_domain_in_hull(inst.D, inst.P)
    parts = by_part(checks)
    value = parts["disjoint domains: robust value >= log p"][0].truth
    if in_hull:
        assert value == pytest.approx(np.log(2), abs=1e-7)
    else:
        assert value > np.log(2) + 1e-7


def test_thm3_ensemble_both_readings():
    """Identical experts: the summary fails at the worst vertex; identical domains: it holds."""
    rng = np.random.default_rng(5)
    experts = make_instance("identical-experts", 2, 4, 0.6, rng)
    eps = expert_errors(experts.D, experts.P)
    assert np.ptp(eps) > 0.05
    checks = by_part(check_thm3_ensemble(experts, np.eye(2)))
    r1 = checks["reading 1, identical experts: KL(D_lam||pi_g*) <= sum sigma_k eps_k"]
    worst = int(np.argmax(eps))
    assert r1[worst].violated and r1[worst].meets_assumption
    assert checks["identical experts: robust value = max_k eps_k"][0].slack > -1e-7
    assert not any(c.violated for c in checks["sum sigma_k eps_k = LSE(eps) - H(sigma)"])
    domains = make_instance("identical-domains", 3, 5, 0.6, rng)
    checks = by_part(check_thm3_ensemble(domains, np.vstack([np.eye(3), np.full((1, 3), 1 / 3)])))
    r2 = checks["reading 2, identical domains: KL(D_lam||pi_g*) <= sum sigma_k eps_k"]
    assert all(c.meets_assumption and not c.violated for c in r2)


@pytest.fixture(scope="module")
def conflict():
    return dist.conflict_instance(3, 3, noise=0.1, smoothing=0.3, rng=np.random.default_rng(0))


def test_thm18_joint_space_equality_and_sequence_inequality(conflict):
    """Static gate, noisy router: on the joint space "=" holds exactly, on sequences only a strict "<="."""
    rng = np.random.default_rng(1)
    checks = by_part(dist.check_thm18(conflict, constant_gate([0.4, 0.6], 27), rng, static=True,
                                      noise_scales=(1.0,)))
    joint = checks["joint space (sequence, expert path): KL = summed router KL"][0]
    assert not joint.violated and joint.bound > 1e-2
    seq = checks["sequences: KL(pi_g||r_gamma) <= summed router KL"][0]
    assert not seq.violated and seq.truth < seq.bound - 1e-3
    assert checks["sequences: KL(pi_g||r_gamma) = summed router KL"][0].violated


def test_thm18_input_dependent_gate_breaks_the_sequence_inequality(conflict):
    """The exact robust gate: the Bayes router's routed model differs from pi_g although the router KL is 0."""
    rng = np.random.default_rng(2)
    (_, _), (gate, static) = dist.thm18_gates(conflict, rng)
    assert not static
    checks = by_part(dist.check_thm18(conflict, gate, rng, static=False, noise_scales=(0.0, 0.5)))
    seq = checks["sequences: KL(pi_g||r_gamma) <= summed router KL"][0]
    assert seq.bound == pytest.approx(0.0, abs=1e-12) and seq.truth > 1e-2 and seq.violated
    assert not any(c.violated for c in checks["joint space (sequence, expert path): KL = summed router KL"])


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["random", "overlapping", "identical-domains"]), st.integers(0, 2**31))
def test_hull_lipschitz_constant_bounds_every_reachable_spread(regime, seed):
    """For any q in the hull with mass one, spread_k KL(D_k || q) / 2 <= the a-priori constant."""
    rng = np.random.default_rng(seed)
    inst = make_instance(regime, 3, 6, 0.5, rng)
    lo, hi = pointwise_hull(inst.P)
    L = hull_lipschitz_constant(inst.D, inst.P)
    tried = 0
    for _ in range(20):
        # q = lo + s w (hi - lo) with the s that gives mass one: in the hull when s <= 1
        w = rng.uniform(size=inst.n) * (hi - lo)
        s = (1 - lo.sum()) / w.sum() if w.sum() > 0 else np.inf
        if not 0 <= s <= 1:
            continue
        tried += 1
        c = kl(inst.D, lo + s * w)
        assert np.ptp(c) / 2 <= L + 1e-9
    assert tried > 0


def test_worst_partition_gap_singletons_closed_form():
    """Singleton cells: sup_w diff(x)(-log q(x)) picks min_j pi_j where diff > 0, max_j where diff < 0."""
    inst = wide_hull_instance(2, 12, 1e-2, np.random.default_rng(3))
    diff = inst.D[0] - np.random.default_rng(4).dirichlet(np.ones(12))
    lo, hi = pointwise_hull(inst.P)
    expected = float(np.where(diff > 0, -diff * np.log(lo), -diff * np.log(hi)).sum())
    got = worst_partition_gap(diff, np.arange(12), inst.P, simplex_lattice(2, 50))
    assert got == pytest.approx(expected, abs=1e-12)
    # one cell: the sup over the constant gates is no larger
    assert worst_partition_gap(diff, np.zeros(12, dtype=int), inst.P, simplex_lattice(2, 50)) <= got + 1e-12


def test_simplex_lattice():
    grid = simplex_lattice(3, 4)
    assert grid.shape == (15, 3)
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)
    assert (grid >= 0).all()


def test_committed_readme_block_matches_committed_report():
    report = json.loads((ROOT / "results" / "claims_full.json").read_text())
    assert current_block((ROOT / "README.md").read_text()) == render(report)


def test_readme_block_replacement(tmp_path):
    text = f"# T\n\n{BEGIN}\nold\n{END}\n\nafter\n"
    new = replace_block(text, "new\n")
    assert new == f"# T\n\n{BEGIN}\nnew\n{END}\n\nafter\n"
    assert current_block(new) == "new\n"
    with pytest.raises(InputError, match="no generated claims block"):
        replace_block("# no markers\n", "x")
