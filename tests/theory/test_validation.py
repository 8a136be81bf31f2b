"""Each kind of bad input is refused with a typed exception that names the problem."""

import numpy as np
import pytest

from theory.errors import (
    EmptyGateSpaceError,
    InfeasibleLambdaError,
    InvalidDistributionError,
    InvalidOptionError,
    ShapeMismatchError,
    UncoveredOutcomeError,
)
from theory.gates import require_nonempty_G1
from theory.prior import PriorSet
from theory.solve import solve_fixed_mixture, solve_robust
from theory.validation import SUM_TOL, as_instance, as_weights

GOOD = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])


@pytest.mark.parametrize(
    "bad, pattern",
    [
        (np.nan, r"row 1, outcome 2: entry is nan"),
        (np.inf, r"row 1, outcome 2: entry is inf"),
        (-0.1, r"row 1, outcome 2: negative probability"),
    ],
)
def test_bad_entries_name_row_and_outcome(bad, pattern):
    D = GOOD.copy()
    D[1, 2] = bad
    with pytest.raises(InvalidDistributionError, match=pattern):
        as_instance(D, GOOD)


def test_wrong_sum_states_row_and_tolerance():
    P = GOOD.copy()
    P[0, 0] += 10 * SUM_TOL
    with pytest.raises(InvalidDistributionError, match=r"experts row 0 sums to .* not 1 \(tolerance 1e-08\)"):
        as_instance(GOOD, P)
    # Within the tolerance the row is accepted.
    P[0, 0] = GOOD[0, 0] + 0.5 * SUM_TOL
    as_instance(GOOD, P)


def test_shape_mismatch():
    with pytest.raises(ShapeMismatchError, match=r"domains have shape \(2, 3\) but experts have shape \(3, 3\)"):
        as_instance(GOOD, np.vstack([GOOD, GOOD[:1]]))
    with pytest.raises(ShapeMismatchError, match="length p=2"):
        as_weights([0.2, 0.3, 0.5], 2)


def test_unchecked_instance_is_converted_only():
    # validate=False in the solvers: no pass over the data, float64 arrays out.
    D, P = as_instance([[0.5, 0.7]], [[1, 0]], check=False)
    assert D.dtype == P.dtype == np.float64
    np.testing.assert_array_equal(D, [[0.5, 0.7]])
    with pytest.raises(InvalidDistributionError, match="sums to 1.2"):
        as_instance([[0.5, 0.7]], [[1, 0]])


def test_uncovered_outcome_named():
    D = np.array([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]])
    P = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])
    with pytest.raises(UncoveredOutcomeError, match="domain 0 .* outcome 2"):
        as_instance(D, P)


def test_empty_gate_space_on_support():
    # DESIGN 2.1: one expert, data on {a}, expert gives a 0.9 and b 0.1.
    with pytest.raises(EmptyGateSpaceError, match="renormalise"):
        require_nonempty_G1(np.array([[0.9, 0.1]]), support=np.array([True, False]))


def test_infeasible_lambda():
    with pytest.raises(InfeasibleLambdaError, match="domain 1: lower 0.6 > upper 0.5"):
        PriorSet(2, lower=[0.0, 0.6], upper=[1.0, 0.5])
    with pytest.raises(InfeasibleLambdaError, match="sum of lower bounds 1.2"):
        PriorSet(2, lower=[0.6, 0.6])
    with pytest.raises(InfeasibleLambdaError, match="polytope"):
        PriorSet(2, A=[[1.0, 1.0]], b=[0.5])


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"solver": "newton"}, r"unknown solver 'newton'; allowed: dual, cvxpy, fixed-point"),
        ({"family": "tree"}, r"unknown gate family 'tree'; allowed: full, constant, partition"),
        ({"solver": "cvxpy", "family": "partition"}, "needs cells"),
        ({"solver": "fixed-point", "family": "constant"}, "'full' only"),
    ],
)
def test_unknown_options(kwargs, pattern):
    with pytest.raises(InvalidOptionError, match=pattern):
        solve_robust(GOOD, GOOD, **kwargs)


def test_unknown_fixed_mixture_options():
    with pytest.raises(InvalidOptionError, match="unknown fixed-mixture solver 'exact'"):
        solve_fixed_mixture(GOOD, GOOD, [0.5, 0.5], solver="exact")
    with pytest.raises(InvalidDistributionError, match="mixture row 0 sums to 0.9"):
        solve_fixed_mixture(GOOD, GOOD, [0.5, 0.4])
