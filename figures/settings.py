"""Per-profile settings of a figure expanded into one experiment configuration per sweep point."""

from __future__ import annotations

from itertools import product


def sweep_configs(settings: dict, profile: str, *, expand: tuple[str, ...] = (), fixed: dict | None = None,
                  grid: dict | None = None) -> list[dict]:
    """The configurations of a sweep: the product of ``grid``, the ``expand`` settings and the seeds.

    ``settings[profile]`` holds scalar options, a ``seeds`` sequence and, for each name in
    ``expand``, a sequence of values; ``fixed`` adds options shared by every configuration
    and ``grid`` (name -> values) axes that are not in the settings. Configurations vary
    ``grid`` outermost, then ``expand`` in order, then the seed (innermost).
    """
    s = dict(settings[profile])
    axes = {**(grid or {}), **{name: s.pop(name) for name in expand}, "seed": s.pop("seeds")}
    return [{**s, **(fixed or {}), **dict(zip(axes, values))} for values in product(*axes.values())]
