"""The real-world cost probe counts the units of work the profile's stages do."""

from benchmarks.real_world_cost import build_parser, units
from figures.fig14_real_world import configs


def test_units_scale_with_the_profile():
    full = configs("full")[0]
    u = units(full, windows=8000, test_windows=3600, fit_steps=1500, p=4)
    assert u["experts"] == full["steps"] * 4 and u["monolithic"] == full["steps"]
    assert u["cache"] == (8000 + 3 * full["m_expert"] * 4) * 4  # every window and expert sample under every expert
    assert u["test scoring"] == 3600 * 3 and u["gate fit"] == 1500
    double = units({**full, "steps": 2 * full["steps"], "m_expert": 2 * full["m_expert"]}, windows=8000, test_windows=3600, fit_steps=1500, p=4)
    assert double["experts"] == 2 * u["experts"] and double["cache"] > u["cache"]


def test_parser_defaults_are_a_short_probe():
    args = build_parser().parse_args(["--out", "x"])
    assert args.profile == "full" and args.steps < configs("full")[0]["steps"]
