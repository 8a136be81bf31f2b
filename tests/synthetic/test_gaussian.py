import numpy as np
import pytest

from synthetic.gaussian import (
    GaussianMixtureDensity,
    Grid,
    continuous_kl,
    discretisation_report,
    fit_gmm_expert,
    grid_instance,
    random_mixture,
)
from tests.synthetic.conftest import ALPHA, chisquare_pvalue
from theory.divergences import kl
from theory.errors import InputError, ShapeMismatchError


@pytest.fixture(scope="module")
def one_d():
    doms = [random_mixture(1, 3, seed=s) for s in range(3)]
    experts = [fit_gmm_expert(d.sample(4000, seed=10 + k), 2, seed=0) for k, d in enumerate(doms)]
    return doms, experts


def test_1d_cells_with_tails_are_exact_masses(one_d):
    doms, experts = one_d
    inst = grid_instance(doms, experts, Grid.regular(-6, 6, 40))
    assert inst.D.shape == (3, 42)
    # Before normalisation the cell masses plus tails already sum to one.
    np.testing.assert_allclose(inst.midpoint_domains + (1 - inst.inside_domains), 1.0, atol=1e-12)
    dom = GaussianMixtureDensity([0.3, 0.7], [[-1.0], [2.0]], [[[0.25]], [[1.0]]])
    single = grid_instance([dom], [dom], Grid.regular(-6, 6, 40)).D[0]
    from scipy.stats import norm
    edges = np.r_[-np.inf, np.linspace(-6, 6, 41), np.inf]
    exact = 0.3 * np.diff(norm.cdf(edges, -1, 0.5)) + 0.7 * np.diff(norm.cdf(edges, 2, 1))
    np.testing.assert_allclose(single, exact, atol=1e-15)


def test_sample_frequencies_match_cell_masses(one_d):
    dom = one_d[0][0]
    grid = Grid.regular(-6, 6, 30)
    probs = grid_instance([dom], [dom], grid).D[0]
    x = dom.sample(20_000, seed=3)[:, 0]
    cells = np.searchsorted(grid.edges[0], x, side="right")  # 0 = lower tail, 31 = upper tail
    assert chisquare_pvalue(x, probs, cells) > ALPHA


def test_discretised_kl_obeys_data_processing_and_converges(one_d):
    doms, experts = one_d
    kls = []
    for n in (25, 50, 100, 200, 400, 800):
        inst = grid_instance(doms, experts, Grid.regular(-6, 6, n))
        kls.append(kl(inst.D, inst.P))
    kls = np.array(kls)
    cont = np.array([continuous_kl(d, e)[0] for d, e in zip(doms, experts)])
    # Nested refinements: coarse-graining can only lower the KL (data processing).
    assert (np.diff(kls, axis=0) >= -1e-12).all()
    assert (kls <= cont + 1e-9).all()
    np.testing.assert_allclose(kls[-1], cont, atol=5e-5)
    assert (cont > 1e-4).all()  # experts with fewer components than the truth: eps_k > 0


def test_2d_grid_mass_and_report():
    doms = [random_mixture(2, 3, seed=s) for s in range(2)]
    experts = [fit_gmm_expert(d.sample(3000, seed=5 + k), 2, seed=1) for k, d in enumerate(doms)]
    inst = grid_instance(doms, experts, Grid.regular(-7, 7, 80, dim=2))
    assert inst.D.shape == (2, 6400)
    np.testing.assert_allclose(inst.D.sum(axis=1), 1.0, atol=1e-12)
    report = discretisation_report(doms, experts, inst, m=40_000, seed=0)
    assert (report["outside_mass_domain"].abs() < 1e-4).all()
    assert (report["midpoint_mass_error_domain"].abs() < 5e-3).all()
    # The midpoint-rule KL agrees with the Monte Carlo continuous KL within 5 standard errors.
    assert (report["kl_grid_minus_continuous"].abs() < 5 * report["kl_continuous_error"] + 2e-3).all()


def test_gmm_expert_is_reproducible_and_recorded():
    x = random_mixture(1, 3, seed=7).sample(1000, seed=0)
    a, b = fit_gmm_expert(x, 2, seed=4), fit_gmm_expert(x, 2, seed=4)
    np.testing.assert_array_equal(a.means, b.means)
    assert a.seed == 4 and a.data_checksum == b.data_checksum and a.converged


def test_logpdf_integrates_to_one():
    dom = random_mixture(1, 4, seed=2)
    x = np.linspace(-15, 15, 60_001)
    assert np.trapezoid(dom.pdf(x), x) == pytest.approx(1.0, abs=1e-9)


def test_bad_configuration_is_a_clear_error():
    with pytest.raises(InputError, match="component 0 is not symmetric positive definite"):
        GaussianMixtureDensity([1.0], [[0.0]], [[[-1.0]]])
    with pytest.raises(InputError, match="d=3"):
        GaussianMixtureDensity([1.0], [[0.0, 0.0, 0.0]], [np.eye(3)])
    with pytest.raises(InputError, match="hi > lo"):
        Grid.regular(1, 0, 10)
    with pytest.raises(ShapeMismatchError, match="2-D but the grid is 1-D"):
        d = random_mixture(2, 2, seed=0)
        grid_instance([d], [d], Grid.regular(-1, 1, 5))
