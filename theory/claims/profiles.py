"""How many and how large instances the audit tries: ``quick`` (under a minute) or ``full``
(the names of the figures' profiles, ``python -m figures --profile``)."""

from __future__ import annotations

from dataclasses import dataclass

from theory.errors import InvalidOptionError


@dataclass(frozen=True)
class Profile:
    """Instance grid of the audit.

    ``sizes`` are (p, n) pairs, ``qualities`` expert noise levels, ``per_cell`` instances
    per (regime, size, quality); ``weights`` random mixtures per instance (on top of the
    vertices and the uniform mix); the remaining fields size the claims with their own
    instances (Thm 9, Algorithm 1, Thm 18, Thms 4-5). Thm 9 also runs on a wide-hull
    instance (``thm9_wide_n`` outcomes, expert floor ``thm9_wide_floor``) where the
    gate-complexity term matters. Both profiles run the same code on the same kinds of
    instance (fixed counterexamples included); only the counts differ.
    """

    name: str
    sizes: tuple[tuple[int, int], ...]
    qualities: tuple[float, ...]
    per_cell: int
    weights: int
    thm9_m: tuple[int, ...]
    thm9_cells: tuple[int, ...]
    thm9_draws: int
    thm9_n: int
    thm9_wide_n: int
    thm9_wide_floor: float
    alg1_horizons: tuple[int, ...]
    alg1_instances: int
    thm18_instances: int
    thm18_lengths: tuple[tuple[int, int], ...]
    prior_shrink: tuple[float, ...]


QUICK = Profile(
    name="quick",
    sizes=((2, 4), (3, 8)),
    qualities=(0.2, 0.7),
    per_cell=2,
    weights=3,
    thm9_m=(30, 300),
    thm9_cells=(1, 3, 12),
    thm9_draws=3,
    thm9_n=12,
    thm9_wide_n=24,
    thm9_wide_floor=1e-3,
    alg1_horizons=(100, 300, 1000, 3000),
    alg1_instances=2,
    thm18_instances=2,
    thm18_lengths=((2, 3), (3, 3)),
    prior_shrink=(0.3, 0.8),
)

FULL = Profile(
    name="full",
    sizes=((2, 3), (2, 6), (3, 6), (3, 12), (4, 16), (5, 40)),
    qualities=(0.05, 0.3, 0.7, 1.0),
    per_cell=6,
    weights=6,
    thm9_m=(10, 30, 100, 300, 1000, 3000),
    thm9_cells=(1, 2, 4, 8, 16),
    thm9_draws=12,
    thm9_n=16,
    thm9_wide_n=48,
    thm9_wide_floor=1e-3,
    alg1_horizons=(100, 300, 1000, 3000, 10000, 30000),
    alg1_instances=6,
    thm18_instances=6,
    thm18_lengths=((2, 3), (3, 3), (2, 5), (3, 4)),
    prior_shrink=(0.1, 0.3, 0.5, 0.8, 0.95),
)

PROFILES = {p.name: p for p in (QUICK, FULL)}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise InvalidOptionError(f"unknown audit profile {name!r}; expected one of {sorted(PROFILES)}")
    return PROFILES[name]
