"""The real-world figure's profiles have the issue's sizes: experts ~1M (full) and ~6.5M (paper), gate ~5%."""

import pytest

from figures import fig14_real_world as fig
from synthetic.experiments import real_world as rw


@pytest.mark.parametrize("name,expert", [("full", 1.0e6), ("paper", 6.5e6)])
def test_expert_and_gate_sizes(name, expert):
    s = {**fig.SETTINGS, **fig.EXTRA_SETTINGS}[name]
    n_expert = rw.transformer_parameters(s["expert_width"], s["T"])
    n_gate = rw.gate_parameters(rw.make_gate(4, s["T"], s["gate_width"], 0))
    assert abs(n_expert - expert) <= 0.05 * expert
    assert 0.03 <= n_gate / n_expert <= 0.06
    assert s["T"] == 256 and max(s["T_sweep"]) < s["T"] and min(s["T_sweep"]) == 16


def test_three_seeds_and_three_subsamples_in_every_profile():
    for name in (*fig.SETTINGS, *fig.EXTRA_SETTINGS):
        runs = {(c["seed"], c["subsample"]) for c in fig.configs(name)}
        assert len(runs) == 5 and {s for s, _ in runs} == {0, 1, 2} and {b for _, b in runs} == {0, 1, 2}
