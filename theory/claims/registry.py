"""The claims of the paper: stable ids, statements, and the instances each is tried on."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from theory.claims import distillation as dist
from theory.claims.algorithm import check_alg1_rate
from theory.claims.fixed import check_jsd_identity, check_prop2, check_thm14
from theory.claims.generalisation import check_thm9, random_partition
from theory.claims.instances import REGIMES, Instance, instance_grid, make_instance, random_weights
from theory.claims.monolithic import ExponentialFamily, check_thm6, check_thm7
from theory.claims.profiles import Profile
from theory.claims.record import Check
from theory.claims.robust import (
    box_priors,
    check_least_favorable,
    check_thm3,
    check_thm3_ensemble,
    check_thm3_regimes,
    check_thm4_5,
)
from theory.claims.support import COUNTEREXAMPLE_D, COUNTEREXAMPLE_P, check_lemma1, leaky_support_instance

#: Dimension of the monolithic exponential family (features per outcome).
FAMILY_DIM = 2


@dataclass
class Trial:
    """One instance of a claim: its description (for counterexamples), size, and checks."""

    instance: dict[str, Any]
    size: int
    checks: list[Check]


@dataclass(frozen=True)
class ClaimSpec:
    """A claim: id, statement, the regimes it is tried on, and how to run it.

    ``assumption`` names the extra hypothesis under which the claim is expected to hold
    when it fails as stated (checks record whether their instance meets it);
    ``allowed_rate`` is the fraction of failing instances a high-probability claim allows.
    """

    id: str
    statement: str
    regimes: tuple[str, ...]
    trials: Callable[[Profile, Any], Iterator[Trial]]
    assumption: str | None = None
    allowed_rate: float = 0.0
    summarise: Callable[[list[Trial]], dict[str, Any]] | None = field(default=None)


def _grid(regimes, prof: Profile, rng) -> Iterator[Instance]:
    return instance_grid(regimes, prof.sizes, prof.qualities, prof.per_cell, rng)


def _trial(inst: Instance, checks) -> Trial:
    return Trial(inst.describe(), inst.size, list(checks))


def _per_instance(check: Callable[[Instance, np.ndarray, Any], list[Check]], regimes):
    def trials(prof: Profile, rng) -> Iterator[Trial]:
        for inst in _grid(regimes, prof, rng):
            yield _trial(inst, check(inst, random_weights(inst.p, rng, prof.weights), rng))

    return trials


def _observations(part_prefix: str):
    """Summary of an observation part: how often the first quantity beat the second."""

    def summarise(trials: list[Trial]) -> dict[str, Any]:
        slacks = np.array([c.slack for t in trials for c in t.checks if c.part.startswith(part_prefix)])
        if slacks.size == 0:
            return {}
        return {"observation": part_prefix, "count": int(slacks.size), "fraction_positive": float((slacks > 0).mean()),
                "mean": float(slacks.mean()), "min": float(slacks.min()), "max": float(slacks.max())}

    return summarise


def _by_regime(trials: list[Trial]) -> dict[str, Any]:
    """Per regime and part: checks, violations and worst slack."""
    rows = defaultdict(list)
    for t in trials:
        for c in t.checks:
            rows[(t.instance.get("regime", "-"), c.part)].append(c)
    table = [{"regime": regime, "part": part, "checks": len(cs), "violations": sum(c.violated for c in cs),
              "worst_slack": float(min(c.slack for c in cs))} for (regime, part), cs in sorted(rows.items())]
    return {"table": table}


def _lipschitz_summary(trials: list[Trial]) -> dict[str, Any]:
    q = [c.quantities for t in trials for c in t.checks if c.part.startswith("V(simplex)")]
    ratios = np.array([x["ratio"] for x in q])
    derived = np.array([x["lipschitz_derived"] for x in q])
    return {
        "lipschitz_estimate": float(ratios.max()),
        "lipschitz_estimate_how": "max over instances and priors of (V(simplex) - V(Lambda)) / d_H (L1)",
        "lipschitz_derived_how": "L = (max_k - min_k KL(D_k || q_Lambda)) / 2, q_Lambda the restricted robust gate",
        "lipschitz_derived_max": float(derived.max()),
        "ratio_to_derived_max": float((ratios[derived > 1e-6] / derived[derived > 1e-6]).max(initial=0.0)),
    }


def _thm9_summary(trials: list[Trial]) -> dict[str, Any]:
    rows = defaultdict(list)
    for t in trials:
        for c in t.checks:
            q = c.quantities
            rows[(q["m"], q["cells"])].append((np.max(q["gap"]), q["gap_lam_hat"], np.min(q["bound"]),
                                               np.mean(q["rademacher"])))
    table = []
    for (m, cells), vals in sorted(rows.items()):
        a = np.array(vals)
        table.append({"m": int(m), "cells": int(cells), "draws": len(vals), "mean_worst_gap": float(a[:, 0].mean()),
                      "max_worst_gap": float(a[:, 0].max()), "mean_gap_lam_hat": float(a[:, 1].mean()),
                      "mean_bound": float(a[:, 2].mean()), "mean_rademacher": float(a[:, 3].mean())})
    return {"table": table}


def _alg1_summary(trials: list[Trial]) -> dict[str, Any]:
    slopes = [c.quantities["slope"] for t in trials for c in t.checks]
    consts = [c.quantities["constant"] for t in trials for c in t.checks]
    return {"slopes": [float(s) for s in slopes], "max_constant": float(np.max(consts))}


def _thm14_trials(prof, rng):
    for inst in _grid(("disjoint", "disjoint-leaky"), prof, rng):
        yield _trial(inst, check_thm14(inst))


def _thm3_regimes_trials(prof, rng):
    for inst in _grid(("disjoint", "identical-experts"), prof, rng):
        yield _trial(inst, check_thm3_regimes(inst, random_weights(inst.p, rng, prof.weights)))


def _thm45_trials(prof, rng):
    for inst in _grid(("random", "overlapping", "disjoint"), prof, rng):
        yield _trial(inst, check_thm4_5(inst, box_priors(inst.p, rng, prof.prior_shrink)))


def _least_favorable_trials(prof, rng):
    for inst in _grid(REGIMES, prof, rng):
        family = ExponentialFamily.random(inst.n, FAMILY_DIM, rng)
        yield _trial(inst, check_least_favorable(inst, random_weights(inst.p, rng, prof.weights), family))


def _thm6_trials(prof, rng):
    for inst in _grid(REGIMES, prof, rng):
        family = ExponentialFamily.random(inst.n, FAMILY_DIM, rng)
        yield _trial(inst, check_thm6(inst, random_weights(inst.p, rng, prof.weights), family))


def _thm9_trials(prof, rng):
    inst = make_instance("overlapping", 3, prof.thm9_n, 0.3, rng)
    for c in prof.thm9_cells:
        cells = random_partition(inst.n, min(c, inst.n), rng)
        for m in prof.thm9_m:
            for _ in range(prof.thm9_draws):
                yield _trial(inst, check_thm9(inst, m, cells, rng))


def _lemma1_trials(prof, rng):
    yield Trial({"D": COUNTEREXAMPLE_D.tolist(), "P": COUNTEREXAMPLE_P.tolist(), "name": "paper's counterexample"},
                COUNTEREXAMPLE_D.size, check_lemma1(COUNTEREXAMPLE_D, COUNTEREXAMPLE_P))
    for p, n in prof.sizes:
        for leak in np.minimum(prof.qualities, 0.9):  # the renormalised experts need mass on S
            for renormalise in (False, True):
                for _ in range(prof.per_cell):
                    D, P = leaky_support_instance(p, n, leak, rng, renormalise=renormalise)
                    yield Trial({"D": D.tolist(), "P": P.tolist(), "leak": float(leak), "renormalised": renormalise},
                                D.size, check_lemma1(D, P))


def _alg1_trials(prof, rng):
    for i in range(prof.alg1_instances):
        p, n = prof.sizes[i % len(prof.sizes)]
        inst = make_instance(("random", "overlapping")[i % 2], p, n, 0.3, rng)
        yield _trial(inst, check_alg1_rate(inst, prof.alg1_horizons))


def _thm18_trials(prof, rng):
    for i in range(prof.thm18_instances):
        V, T = prof.thm18_lengths[i % len(prof.thm18_lengths)]
        if i % 2 == 0:
            inst = dist.conflict_instance(V, T, noise=0.1, smoothing=0.3, rng=rng)
        else:
            inst = dist.random_bigram_instance(2 + (i // 2) % 2, V, T, smoothing=0.3, rng=rng)
        desc = {"V": V, "T": T, "domain_init": inst.domain_init.tolist(), "domain_trans": inst.domain_trans.tolist(),
                "expert_init": inst.expert_init.tolist(), "expert_trans": inst.expert_trans.tolist()}
        for gate, static in dist.thm18_gates(inst, rng):
            shown = {"gate_weights": gate[0].tolist()} if static else {"gate": gate.tolist()}
            yield Trial({**desc, "static_gate": static, **shown}, inst.D.size,
                        dist.check_thm18(inst, gate, rng, static=static))


ALL_REGIMES = REGIMES

CLAIMS: tuple[ClaimSpec, ...] = (
    ClaimSpec("prop2", "Constant gate g = lam: KL(D_lam || sum_k lam_k pi_k) <= sum_k lam_k eps_k",
              ALL_REGIMES, _per_instance(lambda inst, lams, rng: check_prop2(inst, lams), ALL_REGIMES)),
    ClaimSpec("thm14", "Disjoint domains: every static gate has worst-case KL >= log sum_k exp(eps_k); "
              "the best static weights are softmax(eps)", ("disjoint", "disjoint-leaky"), _thm14_trials,
              assumption="each expert is supported on its own domain's support (disjoint experts)"),
    ClaimSpec("thm3", "A saddle point (lam*, g*) exists and for every lam: KL(D_lam || pi_g*) <= "
              "log sum_k exp(eps_k) - H_sigma^{lam*}(K|X) - JSD_lam",
              ALL_REGIMES, _per_instance(lambda inst, lams, rng: check_thm3(inst, lams), ALL_REGIMES)),
    ClaimSpec("jsd-identity", "KL(D_lam || pi) = sum_k lam_k KL(D_k || pi) - JSD_lam, 0 <= JSD_lam <= H(lam)",
              ALL_REGIMES, _per_instance(check_jsd_identity, ALL_REGIMES)),
    ClaimSpec("thm3-regimes", "Disjoint experts: KL(D_lam || pi_g*) <= log sum exp(eps) - H(lam) (value <= log p "
              "when pi_k >= D_k/p); identical experts: bound eps (sum lam*_k eps_k - JSD_lam)",
              ("disjoint", "identical-experts"), _thm3_regimes_trials),
    ClaimSpec("thm3-ensemble", "Fully overlapping experts with unequal errors: the paper's summary "
              "KL(D_lam || pi_g*) <= sum_k sigma_k eps_k vs the derivation sum_k lam*_k eps_k - JSD_lam",
              ("identical-experts", "identical-domains", "overlapping", "random"),
              _per_instance(lambda inst, lams, rng: check_thm3_ensemble(inst, lams),
                            ("identical-experts", "identical-domains", "overlapping", "random")),
              assumption="identical experts pi_k = pi (fully overlapping)", summarise=_by_regime),
    ClaimSpec("thm4-5", "Restricting lam to Lambda lowers the value by at most L * d_H(Lambda, simplex)",
              ("random", "overlapping", "disjoint"), _thm45_trials, summarise=_lipschitz_summary),
    ClaimSpec("least-favorable", "lam* is least favourable and supported on the domains attaining "
              "max_k KL(D_k || pi_g*); usable as data weights for a monolithic model",
              ALL_REGIMES, _least_favorable_trials, summarise=_observations("monolithic on lam*")),
    ClaimSpec("thm6", "Any single model: sum_k lam_k KL(D_k || pi) >= JSD_lam; retrained on the aggregate with "
              "per-domain errors >= eps_k: KL(D_lam || pi) >= sum_k lam_k eps_k - JSD_lam",
              ALL_REGIMES, _thm6_trials, summarise=_observations("robust gate vs monolithic")),
    ClaimSpec("thm7", "Family closed under mixtures: retraining on D_lam gives sum_k lam_k pi_k, the modular "
              "model loses nothing", ("random", "overlapping", "perfect", "identical-domains"),
              _per_instance(check_thm7, ("random", "overlapping", "perfect", "identical-domains")),
              assumption="realisable family: every domain is in the family, so the experts are perfect (pi_k = D_k)"),
    ClaimSpec("thm9", "Population minus empirical cross-entropy of any gate <= sum_k lam_k [2 sqrt2 C e^M R_k(G) + "
              "M sqrt(log(p/delta) / (2 m_k))] with probability >= 1 - delta (delta = 0.05)",
              ("overlapping, partition gates with c cells, m samples per domain",), _thm9_trials,
              allowed_rate=0.05, summarise=_thm9_summary),
    ClaimSpec("lemma1", "G1 (gates with Z_g = 1) is non-empty", ("paper's counterexample", "experts leaking mass "
              "outside the data support", "experts renormalised on the support"), _lemma1_trials,
              assumption="experts normalised on the support of the data (or the gate defined on all outcomes)"),
    ClaimSpec("alg1-rate", "Algorithm 1 (exponentiated gradient on lam, projected gradient on g; averaged "
              "iterates) converges at O(sqrt(log p / T))", ("random", "overlapping"), _alg1_trials,
              summarise=_alg1_summary),
    ClaimSpec("thm18", "Structural distillation: KL(pi_g || routed model) equals the summed expected KL between "
              "the true (Bayes) and learned routers; the Bayes router is the best causal router (Thm 17)",
              ("conflict task bigram", "random bigram", "static gate", "robust (input-dependent) gate"),
              _thm18_trials, assumption="static (input-independent) gate"),
)

CLAIM_IDS = tuple(c.id for c in CLAIMS)
