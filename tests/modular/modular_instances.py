"""Small finite instances and exact references shared by the modular tests."""

from __future__ import annotations

import cvxpy as cp
import numpy as np

from modular.data import sample_set
from theory.divergences import entropy


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
    """Exact ``min_{q in hull, sum q = 1} max_k (KL(D_k || q) - offsets_k)`` by cvxpy/Clarabel.

    The game with per-domain offsets (the "excess" adversary: offsets = expert errors;
    the raw-NLL adversary: offsets = -entropies) is not one of theory's problems, which
    play ``max_k KL(D_k || q)`` over a prior set; the plain robust game comes from
    :func:`theory.solve_robust`. Epigraph form ``min t`` s.t.
    ``KL(D_k || q) - offsets_k <= t``. Returns (value, lam, q); lam are the normalised
    duals of the per-domain constraints.
    """
    p, n = D.shape
    off = np.asarray(offsets, dtype=np.float64)
    q, t = cp.Variable(n), cp.Variable()
    cons = [cp.sum(cp.rel_entr(D[k], q)) - off[k] <= t for k in range(p)]
    prob = cp.Problem(cp.Minimize(t), cons + [q >= P.min(0), q <= P.max(0), cp.sum(q) == 1])
    prob.solve(solver=cp.CLARABEL)
    assert prob.status == cp.OPTIMAL
    lam = np.array([c.dual_value for c in cons]).ravel()
    return float(prob.value), lam / lam.sum(), np.asarray(q.value)


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
