"""The torch KL projection onto the capped simplex against theory.simplex.water_fill.

``min_lam KL(lam || v)`` over ``{sum lam = 1, lo <= lam <= hi}`` and water-filling
``min_q -sum_k v_k log q_k`` over the same set have the same optimality conditions: the
solution is ``clip(c v, lo, hi)`` with the scalar c fixed by the mass. So the two codes
(a bisection on ``log c`` in torch, the exact numpy root) must return the same vector.
"""

import numpy as np
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from modular import kl_project_capped_simplex
from theory.simplex import water_fill


def _unit(n):
    return st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n).map(np.array)


@st.composite
def instances(draw):
    p = draw(st.integers(1, 8))
    v = draw(st.lists(st.floats(1e-8, 1e3), min_size=p, max_size=p).map(np.array))
    lo = draw(_unit(p)) * draw(st.floats(0.0, 0.999)) / p
    hi = lo + (1 - lo) * draw(_unit(p))
    assume(hi.sum() >= 1)
    return v, lo, hi


@settings(max_examples=200, deadline=None)
@given(instances())
def test_kl_projection_matches_water_fill(inst):
    v, lo, hi = inst
    lam = kl_project_capped_simplex(torch.tensor(v), torch.tensor(lo), torch.tensor(hi)).numpy()
    ref, _ = water_fill(v, lo, hi)
    assert abs(lam.sum() - 1) < 1e-9
    assert np.all(lam >= lo - 1e-15) and np.all(lam <= hi + 1e-15)
    np.testing.assert_allclose(lam, ref, atol=1e-9)


def test_kl_projection_is_not_the_euclidean_one():
    """The check can fail: the Euclidean projection (a shift, not a scaling) differs."""
    from theory.simplex import project_capped_simplex

    v, lo, hi = np.array([0.7, 0.2, 0.1]), np.zeros(3), np.ones(3)
    lam = kl_project_capped_simplex(torch.tensor(v * 3), torch.tensor(lo), torch.tensor(hi)).numpy()
    np.testing.assert_allclose(lam, water_fill(v * 3, lo, hi)[0], atol=1e-12)
    assert np.abs(lam - project_capped_simplex(v * 3, lo, hi)).max() > 0.1
