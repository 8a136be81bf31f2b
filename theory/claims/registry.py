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
from theory.claims.generalisation import check_thm9, random_partition, wide_hull_instance
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

#: The statement is known from the paper's own text.
PAPER_TEXT = "paper text"
#: The statement is known only from a secondary summary of the paper (its wording may differ).
SECONDARY = "secondary summary"
SOURCES = (PAPER_TEXT, SECONDARY)

#: Disjoint domains whose experts satisfy pi_k >= D_k / p but whose mean domain is outside
#: the pointwise hull (min_j pi_j(x) > Dbar(x) at the second outcome): robust value 0.7903 > log 2.
LOG_P_COUNTEREXAMPLE = (np.array([[0.9, 0.1, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]]),
                        np.array([[0.5, 0.3, 0.1, 0.1], [0.1, 0.2, 0.35, 0.35]]))
#: Disjoint domains and an unused fifth outcome on which both experts put 30% of their mass.
HARMLESS_LEAK = (np.array([[0.5, 0.5, 0.0, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5, 0.0]]),
                 np.array([[0.42, 0.28, 0.0, 0.0, 0.3], [0.0, 0.0, 0.21, 0.49, 0.3]]))
#: The same domains; only expert 1 leaks (30%) onto domain 2's support.
ONE_WAY_LEAK = (np.array([[0.5, 0.5, 0.0, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5, 0.0]]),
                np.array([[0.42, 0.28, 0.15, 0.15, 0.0], [0.0, 0.0, 0.3, 0.7, 0.0]]))


@dataclass
class Trial:
    """One instance of a claim: its description (for counterexamples), size, and checks."""

    instance: dict[str, Any]
    size: int
    checks: list[Check]


@dataclass(frozen=True)
class ClaimSpec:
    """A claim: id, statement, where its wording comes from, the regimes it is tried on, and how to run it.

    ``source`` is :data:`PAPER_TEXT` or :data:`SECONDARY`; ``assumption`` names the extra
    hypothesis under which the claim is expected to hold when it fails as stated (checks
    record whether their instance meets it); ``allowed_rate`` is the fraction of failing
    instances a high-probability claim allows; ``notes`` say, per topic, why a part is an
    identity or a consistency check and how to read the finding (text, no numbers).
    """

    id: str
    statement: str
    regimes: tuple[str, ...]
    trials: Callable[[Profile, Any], Iterator[Trial]]
    source: str = SECONDARY
    assumption: str | None = None
    allowed_rate: float = 0.0
    summarise: Callable[[list[Trial]], dict[str, Any]] | None = field(default=None)
    notes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"unknown source {self.source!r}; expected one of {SOURCES}")


def _grid(regimes, prof: Profile, rng) -> Iterator[Instance]:
    return instance_grid(regimes, prof.sizes, prof.qualities, prof.per_cell, rng)


def _trial(inst: Instance, checks) -> Trial:
    return Trial(inst.describe(), inst.size, list(checks))


def _named(name: str, D, P, regime: str) -> Instance:
    return Instance(D=np.asarray(D, dtype=np.float64), P=np.asarray(P, dtype=np.float64), regime=regime,
                    params={"name": name})


def named_results(trials: list[Trial]) -> dict[str, Any]:
    """The fixed, named instances (counterexamples) and their checks, side by side."""
    out = {}
    for t in trials:
        name = t.instance.get("name")
        if name:
            out[name] = {"D": t.instance["D"], "P": t.instance["P"], "checks": [
                {"part": c.part, "bound": c.bound, "truth": c.truth, "violated": c.violated} for c in t.checks]}
    return out


def _with_named(summarise):
    def both(trials):
        return {**(summarise(trials) if summarise else {}), "named": named_results(trials)}

    return both


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
    q = [c.quantities for t in trials for c in t.checks if c.part == "V(Lambda) <= V(simplex)"]
    ratios = np.array([x["ratio"] for x in q])
    a_priori = np.array([x["lipschitz_a_priori"] for x in q])
    finite = np.isfinite(a_priori) & (a_priori > 0)
    return {
        "lipschitz_lower_bound": float(ratios.max()),
        "lipschitz_lower_bound_how": "max over instances and priors of (V(simplex) - V(Lambda)) / d_H (L1): "
                                     "any valid constant is at least this",
        "a_priori_how": "L = (max_k U_k - min_k L_k) / 2, the range of KL(D_k || q) over the pointwise hull",
        "a_priori_finite_fraction": float(finite.mean()),
        "a_priori_min": float(a_priori[finite].min()) if finite.any() else float("inf"),
        "a_priori_median": float(np.median(a_priori[finite])) if finite.any() else float("inf"),
        "max_ratio_to_a_priori": float((ratios[finite] / a_priori[finite]).max(initial=0.0)),
    }


def _thm9_summary(trials: list[Trial]) -> dict[str, Any]:
    rows = defaultdict(list)
    for t in trials:
        learned = [c for c in t.checks if c.part.startswith("learned")]
        worst = [c for c in t.checks if c.part.startswith("worst gate")][0]
        q = worst.quantities
        gap = np.max(learned[0].quantities["gap"]) if learned else np.nan
        rows[(q["regime"], q["M"], q["m"], q["cells"])].append(
            (gap, np.max(q["worst_gap"]), np.min(q["bound"]), np.min(q["concentration"]),
             float(worst.variant_violated), float(learned[0].variant_violated) if learned else np.nan))
    table = []
    for (regime, M, m, cells), vals in sorted(rows.items()):
        a = np.array(vals)
        table.append({"instance": regime, "M": float(M), "m": int(m), "cells": int(cells), "draws": len(vals),
                      "max_gap_learned": float(np.nanmax(a[:, 0])), "max_gap_worst_gate": float(a[:, 1].max()),
                      "min_bound": float(a[:, 2].min()), "concentration": float(a[:, 3].min()),
                      "worst_gate_above_concentration": float(a[:, 4].mean()),
                      "learned_above_concentration": float(np.nanmean(a[:, 5]))})
    return {"table": table}


def _alg1_summary(trials: list[Trial]) -> dict[str, Any]:
    slopes = [c.quantities["slope"] for t in trials for c in t.checks]
    consts = [c.quantities["constant"] for t in trials for c in t.checks]
    return {"slopes": [float(s) for s in slopes], "max_constant": float(np.max(consts))}


THM14_REGIMES = ("disjoint", "disjoint-offsupport", "disjoint-oneway", "disjoint-leaky")


def _thm14_trials(prof, rng):
    for name, (D, P) in (("harmless leak", HARMLESS_LEAK), ("one-way leak", ONE_WAY_LEAK)):
        inst = _named(name, D, P, "fixed")
        yield _trial(inst, check_thm14(inst))
    for inst in _grid(THM14_REGIMES, prof, rng):
        yield _trial(inst, check_thm14(inst))


THM3_REGIMES = ("disjoint", "disjoint-broad", "identical-experts")


def _thm3_regimes_trials(prof, rng):
    inst = _named("log p counterexample", *LOG_P_COUNTEREXAMPLE, "fixed")
    yield _trial(inst, check_thm3_regimes(inst, random_weights(inst.p, rng, prof.weights)))
    for inst in _grid(THM3_REGIMES, prof, rng):
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
    # wide hull: the gate-complexity term is what keeps the bound above the worst gate's gap
    wide = wide_hull_instance(2, prof.thm9_wide_n, prof.thm9_wide_floor, rng)
    for c in (wide.n, wide.n // 4):
        cells = random_partition(wide.n, c, rng)
        for m in prof.thm9_m:
            for _ in range(prof.thm9_draws):
                yield _trial(wide, check_thm9(wide, m, cells, rng))


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


ENSEMBLE_REGIMES = ("identical-experts", "identical-domains", "overlapping", "random")
THM7_REGIMES = ("random", "overlapping", "perfect", "identical-domains")

CLAIMS: tuple[ClaimSpec, ...] = (
    ClaimSpec("prop2", "Constant gate g = lam: KL(D_lam || sum_k lam_k pi_k) <= sum_k lam_k eps_k",
              REGIMES, _per_instance(lambda inst, lams, rng: check_prop2(inst, lams), REGIMES),
              source=PAPER_TEXT,
              notes={"vertices": "at lam = e_k both sides are eps_k by definition: identities"}),
    ClaimSpec("thm14", "Disjoint domains: every static gate has worst-case KL >= log sum_k exp(eps_k); "
              "the best static weights are softmax(eps)", THM14_REGIMES + ("fixed: harmless leak, one-way leak",),
              _thm14_trials, source=PAPER_TEXT,
              assumption="no expert puts mass on another domain's support (mass on outcomes no domain uses "
                         "is allowed)", summarise=_with_named(None),
              notes={"assumption": "under it KL(D_k || sum_j w_j pi_j) = eps_k - log w_k exactly, so the barrier "
                                   "and softmax(eps) are exact; mass on unused outcomes only raises eps_k"}),
    ClaimSpec("thm3", "A saddle point (lam*, g*) exists and for every lam: KL(D_lam || pi_g*) <= "
              "log sum_k exp(eps_k) - H_sigma^{lam*}(K|X) - JSD_lam",
              REGIMES, _per_instance(lambda inst, lams, rng: check_thm3(inst, lams), REGIMES),
              source=PAPER_TEXT,
              notes={"saddle point": "max_k KL(D_k||q*) = phi(lam*) is the solver's own stopping certificate: "
                                     "a consistency check"}),
    ClaimSpec("jsd-identity", "KL(D_lam || pi) = sum_k lam_k KL(D_k || pi) - JSD_lam, 0 <= JSD_lam <= H(lam)",
              REGIMES, _per_instance(check_jsd_identity, REGIMES),
              notes={"identity": "mathematical facts used by Thm 3; they test the suite's formulas, not the paper"}),
    ClaimSpec("thm3-regimes", "Disjoint experts: KL(D_lam || pi_g*) <= log sum exp(eps) - H(lam); disjoint domains "
              "with pi_k >= D_k/p: robust value <= log p; identical experts: bound eps (sum lam*_k eps_k - JSD_lam)",
              THM3_REGIMES + ("fixed: log p counterexample",), _thm3_regimes_trials,
              assumption="(1/p) sum_k D_k lies in the pointwise hull of the experts "
                         "(min_j pi_j(x) <= D_k(x)/p <= max_j pi_j(x) on each support, min_j pi_j = 0 off them)",
              summarise=_with_named(None),
              notes={"exact condition": "for disjoint domains max_k KL(D_k||q) >= log p + KL(Dbar||q) for every "
                                        "model q of mass <= 1, so the robust value is always >= log p, with equality "
                                        "iff Dbar = (1/p) sum_k D_k is in the pointwise hull of the experts",
                     "identities": "the disjoint-experts bound is Thm 3's bound specialised, and identical experts "
                                   "and domains leave every gate at q = pi"}),
    ClaimSpec("thm3-ensemble", "Fully overlapping experts with unequal errors: KL(D_lam || pi_g*) <= "
              "sum_k sigma_k eps_k, sigma = softmax(eps)", ENSEMBLE_REGIMES,
              _per_instance(lambda inst, lams, rng: check_thm3_ensemble(inst, lams), ENSEMBLE_REGIMES),
              assumption="per reading: 1. identical experts pi_k = pi; 2. identical domains D_k = D",
              summarise=_by_regime,
              notes={"reading 1": "identical experts make every gate give q = pi, so the robust value is max_k eps_k; "
                                  "sum_k sigma_k eps_k = LSE(eps) - H(sigma) is Thm 3's bound with sigma in place of "
                                  "lam* and the JSD term dropped, below max eps whenever the errors differ: it can "
                                  "never bound the robust value there",
                     "derivation": "sum_k lam*_k eps_k - JSD_lam is Thm 3's own bound specialised to identical "
                                   "experts (an identity part shows it), so its 0 failures are guaranteed by Thm 3",
                     "reading 2": "identical domains: min_G1 KL(D||q) <= KL(D||pi_sigma) <= sum_k sigma_k eps_k by "
                                  "convexity, so the summary holds"}),
    ClaimSpec("thm4-5", "Restricting lam to Lambda lowers the value by at most L * d_H(Lambda, simplex)",
              ("random", "overlapping", "disjoint"), _thm45_trials, summarise=_lipschitz_summary,
              notes={"constant": "the tested L is a priori (range of the KLs over the pointwise hull); the constant "
                                 "from the restricted solution makes the inequality hold by the saddle-point "
                                 "property (consistency check); the largest observed ratio is a lower bound on any "
                                 "valid constant, not an estimate of the paper's"}),
    ClaimSpec("least-favorable", "lam* is least favourable and supported on the domains attaining "
              "max_k KL(D_k || pi_g*); usable as data weights for a monolithic model",
              REGIMES, _least_favorable_trials, summarise=_observations("monolithic on lam*"),
              notes={"support": "lam*_k shortfall_k <= gap follows from the solver's certificate: a consistency "
                                "check, not evidence; phi(lam*) >= phi(lam) is the test"}),
    ClaimSpec("thm6", "Any single model: sum_k lam_k KL(D_k || pi) >= JSD_lam; retrained on the aggregate with "
              "per-domain errors >= eps_k: KL(D_lam || pi) >= sum_k lam_k eps_k - JSD_lam",
              REGIMES, _thm6_trials, summarise=_observations("robust gate vs monolithic"),
              notes={"identity": "both parts follow from KL(D_lam||pi) = sum_k lam_k KL(D_k||pi) - JSD_lam >= 0 "
                                 "and the definition of eps_k: true by construction"}),
    ClaimSpec("thm7", "Family closed under mixtures: retraining on D_lam gives sum_k lam_k pi_k, the modular "
              "model loses nothing", THM7_REGIMES, _per_instance(check_thm7, THM7_REGIMES),
              assumption="realisable family: every domain is in the family, so the experts are perfect (pi_k = D_k)",
              notes={"identity": "the best gate beats the refitted mixture of experts because constant gates are "
                                 "gates; with perfect experts the other parts are 0 = 0 by construction"}),
    ClaimSpec("thm9", "Population minus empirical cross-entropy of any gate <= sum_k lam_k [2 sqrt2 C e^M R_k(G) + "
              "M sqrt(log(p/delta) / (2 m_k))] with probability >= 1 - delta (delta = 0.05)",
              ("overlapping, partition gates with c cells, m samples per domain",
               "wide hull (experts on blocks with a floor), singleton and coarse cells"), _thm9_trials,
              allowed_rate=0.05, summarise=_thm9_summary,
              notes={"power": "the false variant drops the gate-complexity term; on the overlapping instance the "
                              "concentration term alone already exceeds every gap, on the wide-hull instance the "
                              "worst gate of the class exceeds it, so there the complexity term is what holds",
                     "worst gate": "the sup over the class is searched per cell on a simplex lattice: a lower "
                                   "estimate of the sup, attained by an actual gate"}),
    ClaimSpec("lemma1", "G1 (gates with Z_g = 1) is non-empty", ("paper's counterexample", "experts leaking mass "
              "outside the data support", "experts renormalised on the support"), _lemma1_trials, source=PAPER_TEXT,
              assumption="experts normalised on the support of the data (or the gate defined on all outcomes)",
              notes={"identity": "with the gate on all outcomes, or experts normalised on the support, "
                                 "sum_x max_k pi_k(x) >= sum_x pi_1(x) = 1 by construction"}),
    ClaimSpec("alg1-rate", "Algorithm 1 (exponentiated gradient on lam, projected gradient on g; averaged "
              "iterates) converges at O(sqrt(log p / T))", ("random", "overlapping"), _alg1_trials,
              summarise=_alg1_summary),
    ClaimSpec("thm18", "Structural distillation: KL(pi_g || routed model) equals the summed expected KL between "
              "the true (Bayes) and learned routers; the Bayes router is the best causal router (Thm 17)",
              ("conflict task bigram", "random bigram", "static gate", "robust (input-dependent) gate"),
              _thm18_trials, assumption="static (input-independent) gate",
              notes={"readings": "on the joint space of (sequence, expert path) the equality is the chain rule "
                                 "(an identity); on sequences only <= holds (data processing), for static gates"}),
)

CLAIM_IDS = tuple(c.id for c in CLAIMS)
