"""Small random instances (domains D and experts P on n outcomes) for the claims audit.

Regimes:

- ``random``: domains drawn from a Dirichlet, expert k a mixture of domain k and noise;
- ``disjoint``: domains on disjoint blocks of outcomes, experts on the same blocks;
- ``disjoint-leaky``: disjoint domains, experts that also put mass on other blocks;
- ``identical-experts``: every expert is the same model pi (fully overlapping experts);
- ``identical-domains``: every domain is the same D, experts of unequal quality;
- ``overlapping``: domains share a common component (partial overlap);
- ``perfect``: ``pi_k = D_k``.

Two further regimes probe the assumption of Thm 14 (not in :data:`REGIMES`):

- ``disjoint-offsupport``: disjoint domains, and experts that put mass ``OFFSUPPORT_LEAK``
  on outcomes no domain uses (harmless);
- ``disjoint-oneway``: disjoint domains, and only expert 0 leaks onto the other domains'
  supports;

and one the value ``log p`` of disjoint domains:

- ``disjoint-broad``: disjoint domains, experts ``pi_k = D_k / p + (1 - 1/p) r_k`` (so
  ``pi_k >= D_k / p``), ``r_k`` on the own block mixed with weight ``quality`` with a
  full-support law (which may lift ``min_j pi_j`` above ``D_k / p``).

``quality`` is the weight ``s`` of the noise in an expert ``(1 - s) D_k + s U_k``: 0
gives a perfect expert, 1 an expert unrelated to its domain. Unequal errors come from
per-expert noise weights drawn around ``quality``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from theory.errors import InvalidOptionError

REGIMES = (
    "random",
    "disjoint",
    "disjoint-leaky",
    "identical-experts",
    "identical-domains",
    "overlapping",
    "perfect",
)

#: Regimes for Thm 14's assumption, beyond the common grid.
LEAK_REGIMES = ("disjoint-offsupport", "disjoint-oneway", "disjoint-broad")

#: Mass the ``disjoint-offsupport`` experts put on the outcomes no domain uses.
OFFSUPPORT_LEAK = 0.3


@dataclass
class Instance:
    """Domains ``D`` and experts ``P`` (both p x n) with the regime that produced them."""

    D: np.ndarray
    P: np.ndarray
    regime: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def p(self) -> int:
        return self.D.shape[0]

    @property
    def n(self) -> int:
        return self.D.shape[1]

    @property
    def size(self) -> int:
        return self.D.size

    def describe(self) -> dict[str, Any]:
        """The instance in full (float lists), for counterexamples in reports."""
        return {
            "regime": self.regime,
            "p": self.p,
            "n": self.n,
            **self.params,
            "D": self.D.tolist(),
            "P": self.P.tolist(),
        }


def _normalise(a: np.ndarray) -> np.ndarray:
    return a / a.sum(axis=-1, keepdims=True)


def _dirichlet(rng, shape, alpha: float) -> np.ndarray:
    """Dirichlet rows, floored at 1e-6 so that every outcome keeps some mass."""
    draws = rng.gamma(alpha, size=shape)
    return _normalise(np.maximum(_normalise(draws), 1e-6))


def _blocks(n: int, p: int) -> np.ndarray:
    """Block label of each outcome: p nearly equal contiguous blocks."""
    return np.minimum((np.arange(n) * p) // n, p - 1)


def _noise_weights(rng, p: int, quality: float, unequal: bool) -> np.ndarray:
    if not unequal:
        return np.full(p, quality)
    return np.clip(quality * rng.uniform(0.25, 1.75, size=p), 0.01, 1.0)


def make_instance(regime: str, p: int, n: int, quality: float, rng, *, unequal: bool = True) -> Instance:
    """One random instance of ``regime`` with p domains, n outcomes and noise level ``quality``."""
    if regime not in REGIMES + LEAK_REGIMES:
        raise InvalidOptionError(f"unknown instance regime {regime!r}; expected one of {REGIMES + LEAK_REGIMES}")
    if regime.startswith("disjoint") and n < _min_outcomes(regime, p):
        raise InvalidOptionError(f"regime {regime!r} needs n >= {_min_outcomes(regime, p)}, got n={n}, p={p}")
    s = _noise_weights(rng, p, quality, unequal)[:, None]
    if regime.startswith("disjoint"):
        unused = max(1, n // 4) if regime == "disjoint-offsupport" else 0
        block = np.concatenate([_blocks(n - unused, p), np.full(unused, p)])
        own = block[None, :] == np.arange(p)[:, None]
        D = _normalise(np.where(own, rng.gamma(1.0, size=(p, n)) + 1e-3, 0.0))
        U = _normalise(np.where(own, rng.gamma(1.0, size=(p, n)) + 1e-3, 0.0))
        P = (1 - s) * D + s * U
        if regime == "disjoint-leaky":
            leak = 0.5 * quality
            P = (1 - leak) * P + leak * _dirichlet(rng, (p, n), 1.0)
        elif regime == "disjoint-offsupport":
            off = _normalise(np.where(block == p, rng.gamma(1.0, size=(p, n)) + 1e-3, 0.0))
            P = (1 - OFFSUPPORT_LEAK) * P + OFFSUPPORT_LEAK * off
        elif regime == "disjoint-oneway":
            leak = max(0.5 * quality, 0.05)
            others = _normalise(np.where(block != 0, rng.gamma(1.0, size=n) + 1e-3, 0.0))
            P[0] = (1 - leak) * P[0] + leak * others
        elif regime == "disjoint-broad":
            r = (1 - s) * U + s * _dirichlet(rng, (p, n), 1.0)
            P = D / p + (1 - 1 / p) * r
    elif regime == "identical-experts":
        D = _dirichlet(rng, (p, n), 0.7)
        pi = (1 - quality) * D.mean(axis=0) + quality * _dirichlet(rng, (n,), 1.0)
        P = np.tile(pi, (p, 1))
    elif regime == "identical-domains":
        D = np.tile(_dirichlet(rng, (n,), 0.7), (p, 1))
        P = (1 - s) * D + s * _dirichlet(rng, (p, n), 1.0)
    elif regime == "overlapping":
        overlap = rng.uniform(0.2, 0.8)
        D = overlap * _dirichlet(rng, (n,), 0.7)[None, :] + (1 - overlap) * _dirichlet(rng, (p, n), 0.7)
        P = (1 - s) * D + s * _dirichlet(rng, (p, n), 1.0)
    elif regime == "perfect":
        D = _dirichlet(rng, (p, n), 0.7)
        P = D.copy()
    else:
        D = _dirichlet(rng, (p, n), 0.7)
        P = (1 - s) * D + s * _dirichlet(rng, (p, n), 1.0)
    return Instance(
        D=_normalise(D),
        P=_normalise(P),
        regime=regime,
        params={"quality": float(quality), "unequal": bool(unequal)},
    )


def _min_outcomes(regime: str, p: int) -> int:
    """Fewest outcomes a regime needs: a block per domain (and one unused outcome)."""
    if regime == "disjoint-offsupport":
        return p + 1
    return p if regime.startswith("disjoint") else 1


def instance_grid(regimes, sizes, qualities, per_cell: int, rng, *, unequal: bool = True):
    """Yield ``per_cell`` instances for every (regime, (p, n), quality) combination."""
    for regime in regimes:
        for p, n in sizes:
            if n < _min_outcomes(regime, p):
                continue
            for quality in qualities:
                for _ in range(per_cell):
                    yield make_instance(regime, p, n, quality, rng, unequal=unequal)


def random_weights(p: int, rng, count: int) -> np.ndarray:
    """Mixture weights to test a claim at: the vertices, the uniform mix and random draws."""
    draws = rng.dirichlet(np.full(p, 0.5), size=count)
    return np.vstack([np.eye(p), np.full((1, p), 1.0 / p), draws])
