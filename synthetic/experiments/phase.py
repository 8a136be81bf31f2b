"""Phase diagram: robust modular model against one monolithic model, by JSD and expert quality.

On the conflict task (domain A steps +1 mod V, domain B steps -1; the domain ``noise``
sets how much the domains overlap, hence their Jensen-Shannon divergence), expert ``k``
is its domain's chain with extra noise ``expert_noise`` (mixed with the uniform
next-token law, so ``eps_k = KL(D_k || pi_k)`` grows with it), and the monolithic
model is the best model of the experts' size trained on the aggregate: the n-gram of
the same order fitted on the exact even mixture (infinite data). Every KL is exact, by
enumeration of ``{0..V-1}^T``; the robust gate is :func:`theory.solve_robust`.

The worst case over mixtures of ``KL(D_lam || q)`` is attained at a vertex (it is
convex in ``lam``), so it equals ``max_k KL(D_k || q)`` for both models.
"""

from __future__ import annotations

import numpy as np

from synthetic.experiments.common import EXACT_TOL, sha256_array
from synthetic.finite import finite_instance
from synthetic.markov import conflict_task, shift_chain
from synthetic.ngram import NGramModel
from theory import jsd, kl, mixture, solve_robust

#: Effective number of sequences behind an exact (enumerated) fit: pseudo-counts vanish.
EXACT_FIT_SEQUENCES = 1e7


def exact_ngram_fit(V: int, T: int, order: int, outcomes, weights) -> NGramModel:
    """The order-``order`` n-gram fitted to the distribution ``weights`` on ``outcomes``.

    Counts are the exact expected counts scaled to ``EXACT_FIT_SEQUENCES`` sequences
    with add-k smoothing at k = 1e-3, so the model is the maximum-likelihood n-gram
    projection of the distribution up to a negligible pseudo-count.
    """
    model = NGramModel(V, order, T, smoothing="add-k", k=1e-3, name=f"{order}-gram on the aggregate")
    return model.fit(outcomes, np.asarray(weights) * EXACT_FIT_SEQUENCES)


def phase_point(config: dict) -> dict:
    """Modular minus monolithic test KL at one (domain noise, expert noise) point.

    config: ``V``, ``T``, ``noise`` (domain), ``expert_noise`` (added by the experts),
    ``order`` (n-gram order of the monolithic model; 2 = the experts' first-order size).
    """
    V, T, noise = config["V"], config["T"], config["noise"]
    A, B = conflict_task(V, T, noise)
    noisier = noise + (1.0 - noise) * config["expert_noise"]
    experts = [shift_chain(V, T, +1, noisier, "expert A"), shift_chain(V, T, -1, noisier, "expert B")]
    D, P, outcomes = finite_instance([A, B], experts)
    half = np.array([0.5, 0.5])
    mono = exact_ngram_fit(V, T, config["order"], outcomes, mixture(half, D))
    q_mono = np.exp(mono.log_prob(outcomes))
    res = solve_robust(D, P, tol=EXACT_TOL)
    eps, mono_kl = kl(D, P), kl(D, q_mono)
    row = {
        "V": V, "T": T, "noise": noise, "expert_noise": config["expert_noise"], "order": config["order"],
        "eps_mean": float(eps.mean()), "eps_max": float(eps.max()), "jsd_half": jsd(half, D),
        "modular_worst": res.value, "monolithic_worst": float(mono_kl.max()),
        "modular_half": kl(mixture(half, D), res.q), "monolithic_half": kl(mixture(half, D), q_mono),
        "lam_star0": float(res.lam[0]), "solver_status": res.status,
    }
    row["diff_worst"] = row["modular_worst"] - row["monolithic_worst"]
    row["diff_half"] = row["modular_half"] - row["monolithic_half"]
    return {"rows": [row], "checksums": {f"phase/V{V}T{T}/noise{noise}/e{config['expert_noise']}":
                                        sha256_array(np.vstack([D, P]))}}
