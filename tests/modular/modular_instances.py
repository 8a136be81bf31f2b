"""Small finite instances and exact references shared by the modular tests."""

from __future__ import annotations

import numpy as np

from modular.data import sample_set
from theory.divergences import entropy
from theory.solve import solve_robust


def finite_instance(n: int, p: int, seed: int, *, overlap: float = 0.5):
    """Domains D and overlapping experts P (both p x n) with full support.

    Domain k is a Dirichlet draw concentrated on its own block of outcomes; expert k
    mixes its domain with a shared random distribution (weight ``overlap``), so experts
    overlap and differ from their domains.
    """
    rng = np.random.default_rng(seed)
    blocks = np.array_split(np.arange(n), p)
    D = np.full((p, n), 0.02)
    for k, b in enumerate(blocks):
        D[k, b] += rng.dirichlet(np.ones(len(b))) * 3
    D /= D.sum(axis=1, keepdims=True)
    shared = rng.dirichlet(np.ones(n))
    P = (1 - overlap) * (0.7 * D + 0.3 * rng.dirichlet(np.ones(n), size=p)) + overlap * shared
    P /= P.sum(axis=1, keepdims=True)
    return D, P


def enumerated_sets(D, P):
    """Weighted SampleSets enumerating every outcome: domain sets and expert sets."""
    p, n = D.shape
    logp = np.log(P).T
    ids = np.arange(n)
    domains = [sample_set(logp, ids, D[k], name=f"domain {k}") for k in range(p)]
    experts = [sample_set(logp, ids, P[k], name=f"expert {k}") for k in range(p)]
    return domains, experts


def entropies(D):
    return np.asarray(entropy(D), dtype=np.float64)


def tabular_q(gate_logits, P):
    """The gated model q(x) = sum_k softmax(logits)(x,k) P[k, x] of a tabular gate."""
    g = np.exp(gate_logits - gate_logits.max(axis=1, keepdims=True))
    g /= g.sum(axis=1, keepdims=True)
    return np.einsum("nk,kn->n", g, P)


def excess_game_reference(D, P, offsets):
    """Exact ``min_{q in G1} max_k (KL(D_k || q) - offsets_k)``, certified (theory's dual solver).

    The game with per-domain offsets: the "excess" adversary (offsets = expert errors)
    and the raw-NLL adversary (offsets = -entropies). Returns (value, lam, q), lam the
    least-favourable mixture.
    """
    res = solve_robust(D, P, offsets=offsets, tol=1e-10)
    assert res.converged, (res.status, res.gap)
    return float(res.value), res.lam, res.q


def sampled_sets(D, P, m: int, seed: int):
    """m samples of every domain and every expert (outcome ids as features), unweighted."""
    rng = np.random.default_rng(seed)
    p, n = D.shape
    logp = np.log(P).T
    domains, experts = [], []
    for k in range(p):
        x = rng.choice(n, size=m, p=D[k])
        domains.append(sample_set(logp[x], x, name=f"domain {k}"))
        y = rng.choice(n, size=m, p=P[k])
        experts.append(sample_set(logp[y], y, name=f"expert {k}"))
    return domains, experts
