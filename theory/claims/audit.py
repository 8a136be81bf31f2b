"""The audit: run every claim over its instances and reach a verdict with the evidence."""

from __future__ import annotations

import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from theory.claims.profiles import Profile
from theory.claims.record import ABS_TOL, CONSISTENCY, EVIDENCE, IDENTITY, OBSERVATION, to_jsonable
from theory.claims.registry import CLAIMS, SECONDARY, ClaimSpec, Trial
from theory.errors import InvalidOptionError

#: No violation, and the same checks rejected the claim's false variant somewhere.
HOLDS = "holds"
VIOLATED = "violated"
NEEDS_ASSUMPTION = "needs-assumption"
#: No violation, but every check is true by construction (or a solver consistency check).
IDENTITY_VERDICT = "identity"
#: No violation, but the checks never rejected the false variant either: they could not fail.
UNINFORMATIVE = "uninformative"
#: Part verdicts only: a consistency check (certificate) and a reported observation.
CONSISTENT = "consistency"
OBSERVED = "observation"

VERDICTS = (HOLDS, VIOLATED, NEEDS_ASSUMPTION, IDENTITY_VERDICT, UNINFORMATIVE)

#: How a verdict on a statement known only from a secondary summary must be read.
SECONDARY_NOTES = {
    VIOLATED: "the statement as summarised does not hold; the paper's exact statement is unknown",
    NEEDS_ASSUMPTION: "the statement as summarised needs an extra assumption; the paper's exact statement "
                      "is unknown",
}

#: How many violating checks of the counterexample the report keeps.
COUNTEREXAMPLE_CHECKS = 3


@dataclass
class ClaimOutcome:
    """The audit of one claim: verdict, worst slack, per-part statistics and counterexample."""

    id: str
    statement: str
    regimes: tuple[str, ...]
    verdict: str
    source: str
    verdict_note: str
    power: dict[str, Any]
    instances: int
    checks: int
    violations: int
    worst_slack: float | None
    assumption: str | None
    parts: list[dict[str, Any]]
    counterexample: dict[str, Any] | None
    part_counterexamples: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return to_jsonable({
            "id": self.id,
            "statement": self.statement,
            "regimes": list(self.regimes),
            "verdict": self.verdict,
            "source": self.source,
            "verdict_note": self.verdict_note,
            "power": self.power,
            "instances": self.instances,
            "checks": self.checks,
            "violations": self.violations,
            "worst_slack": self.worst_slack,
            "assumption": self.assumption,
            "parts": self.parts,
            "counterexample": self.counterexample,
            "part_counterexamples": self.part_counterexamples,
            "summary": self.summary,
            "notes": self.notes,
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
        })


def claim_rng(seed: int, claim_id: str) -> np.random.Generator:
    """Independent, reproducible stream per claim (the same whichever claims are selected)."""
    return np.random.default_rng([seed, zlib.crc32(claim_id.encode())])


def _power_eligible(c) -> bool:
    """Checks whose false variant counts for the power: on an instance where the claim is
    expected to hold (assumption met or none), and accepting the claim itself. (Identity
    parts report theirs too, but only evidence parts give a claim its power.)"""
    return (c.variant is not None and c.kind != OBSERVATION and c.meets_assumption is not False
            and not c.violated)


def _rate_exceeds(count: int, total: int, allowed_rate: float) -> bool:
    return count > 0 and (total == 0 or count / total > allowed_rate)


def part_statistics(trials: list[Trial], allowed_rate: float = 0.0) -> list[dict[str, Any]]:
    """Per part of the claim: kind, role, checks, worst slack, violations inside/outside the
    assumption, the power of its false variant, and the part's verdict."""
    parts: dict[str, list] = defaultdict(list)
    for t in trials:
        for c in t.checks:
            parts[c.part].append(c)
    out = []
    for name, checks in parts.items():
        slacks = np.array([c.slack for c in checks])
        viol = [c for c in checks if c.violated]
        eligible = [c for c in checks if _power_eligible(c)]
        rejected = sum(bool(c.variant_violated) for c in eligible)
        variants = sorted({c.variant for c in checks if c.variant is not None})
        row = {
            "part": name,
            "kind": checks[0].kind,
            "role": checks[0].role,
            "checks": len(checks),
            "worst_slack": float(slacks.min()),
            "violations": len(viol),
            "violations_meeting_assumption": sum(c.meets_assumption is True for c in viol),
            "violations_outside_assumption": sum(c.meets_assumption is False for c in viol),
            "variant": "; ".join(variants) if variants else None,
            "variant_checks": len(eligible),
            "variant_violations": rejected,
        }
        row["verdict"] = part_verdict(row, allowed_rate)
        out.append(row)
    return out


def part_verdict(row: dict[str, Any], allowed_rate: float = 0.0) -> str:
    """The verdict of one part from its statistics (see :func:`verdict` for the claim's)."""
    if row["kind"] == OBSERVATION:
        return OBSERVED
    if _rate_exceeds(row["violations"], row["checks"], allowed_rate):
        inside = row["violations"] - row["violations_outside_assumption"]
        return VIOLATED if inside > 0 else NEEDS_ASSUMPTION
    if row["role"] == IDENTITY:
        return IDENTITY_VERDICT
    if row["role"] == CONSISTENCY:
        return CONSISTENT
    rejected = _rate_exceeds(row["variant_violations"], row["variant_checks"], allowed_rate)
    return HOLDS if rejected else UNINFORMATIVE


def verdict(spec: ClaimSpec, trials: list[Trial], parts: list[dict[str, Any]] | None = None) -> str:
    """holds / violated / needs-assumption / identity / uninformative.

    A check is violated when its slack is below ``-tol`` (``ABS_TOL`` plus certified
    solver gaps). The claim is violated unless no check is violated, or, for a
    high-probability claim, the fraction of violating instances is within
    ``allowed_rate``; it needs an assumption instead if every violated check is on an
    instance outside the claim's recorded assumption while instances meeting it were
    tried. A claim without violations holds only if one of its evidence parts rejected
    its false variant (:func:`part_verdict`); if all its parts are identities or
    consistency checks it is an ``identity``, otherwise ``uninformative``.
    """
    checks = [c for t in trials for c in t.checks if c.kind != OBSERVATION]
    violated = [c for c in checks if c.violated]
    failing = sum(any(c.violated for c in t.checks) for t in trials)
    if violated and not (trials and failing / len(trials) <= spec.allowed_rate):
        if (spec.assumption and all(c.meets_assumption is False for c in violated)
                and any(c.meets_assumption is True for c in checks)):
            return NEEDS_ASSUMPTION
        return VIOLATED
    parts = part_statistics(trials, spec.allowed_rate) if parts is None else parts
    verdicts = {p["verdict"] for p in parts if p["kind"] != OBSERVATION}
    if HOLDS in verdicts:
        return HOLDS
    if verdicts and verdicts <= {IDENTITY_VERDICT, CONSISTENT}:
        return IDENTITY_VERDICT
    return UNINFORMATIVE


def claim_power(parts: list[dict[str, Any]], allowed_rate: float = 0.0) -> dict[str, Any]:
    """The false variants' rejections over the claim's evidence parts."""
    evidence = [p for p in parts if p["role"] == EVIDENCE and p["kind"] != OBSERVATION and p["variant"]]
    n = sum(p["variant_checks"] for p in evidence)
    v = sum(p["variant_violations"] for p in evidence)
    return {
        "variant_violations": v,
        "variant_checks": n,
        "rejected": _rate_exceeds(v, n, allowed_rate),
        "parts": [{"part": p["part"], "variant": p["variant"], "variant_violations": p["variant_violations"],
                   "variant_checks": p["variant_checks"]} for p in evidence],
    }


def verdict_note(spec: ClaimSpec, verdict_: str) -> str:
    """How to read the verdict given where the statement comes from."""
    if spec.source == SECONDARY:
        return SECONDARY_NOTES.get(verdict_, "statement known only from a secondary summary of the paper")
    return "statement from the paper's own text"


def smallest_counterexample(trials: list[Trial]) -> dict[str, Any] | None:
    """The smallest violating instance (fewest numbers; ties: the most negative slack).

    Violations on instances that meet the claim's assumption (or where none applies)
    come first: they are the ones that decide a "violated" verdict.
    """
    bad = [t for t in trials if any(c.violated for c in t.checks)]
    if not bad:
        return None

    def key(t):
        viol = [c for c in t.checks if c.violated]
        outside = all(c.meets_assumption is False for c in viol)
        return (outside, t.size, min(c.slack for c in viol))

    best = min(bad, key=key)
    worst_first = sorted((c for c in best.checks if c.violated), key=lambda c: (c.meets_assumption is False, c.slack))
    return {"instance": best.instance, "violated_checks": [c.as_dict() for c in worst_first[:COUNTEREXAMPLE_CHECKS]]}


def part_counterexamples(trials: list[Trial]) -> list[dict[str, Any]]:
    """For every violated part, its smallest violating instance and the worst check there.

    As for the claim's counterexample, instances meeting the assumption come first.
    """
    best: dict[str, tuple] = {}
    for t in trials:
        for c in t.checks:
            if not c.violated:
                continue
            key = (c.meets_assumption is False, t.size, c.slack)
            if c.part not in best or key < best[c.part][0]:
                best[c.part] = (key, t.instance, c)
    return [{"part": part, "instance": inst, "check": c.as_dict()} for part, (_, inst, c) in best.items()]


def audit_claim(spec: ClaimSpec, profile: Profile, seed: int) -> ClaimOutcome:
    """Run one claim over its instances and summarise."""
    start, cpu_start = time.perf_counter(), time.process_time()
    trials = list(spec.trials(profile, claim_rng(seed, spec.id)))
    checks = [c for t in trials for c in t.checks if c.kind != OBSERVATION]
    slacks = [c.slack for c in checks]
    parts = part_statistics(trials, spec.allowed_rate)
    verdict_ = verdict(spec, trials, parts)
    return ClaimOutcome(
        id=spec.id,
        statement=spec.statement,
        regimes=spec.regimes,
        verdict=verdict_,
        source=spec.source,
        verdict_note=verdict_note(spec, verdict_),
        power=claim_power(parts, spec.allowed_rate),
        instances=len(trials),
        checks=len(checks),
        violations=sum(c.violated for c in checks),
        worst_slack=float(min(slacks)) if slacks else None,
        assumption=spec.assumption,
        parts=parts,
        counterexample=smallest_counterexample(trials),
        part_counterexamples=part_counterexamples(trials),
        summary=spec.summarise(trials) if spec.summarise else {},
        notes=dict(spec.notes),
        seconds=time.perf_counter() - start,
        cpu_seconds=time.process_time() - cpu_start,
    )


def select(ids=None) -> list[ClaimSpec]:
    """The claim specs with the given ids (all when None), in registry order."""
    if not ids:
        return list(CLAIMS)
    known = {c.id: c for c in CLAIMS}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise InvalidOptionError(f"unknown claim id {unknown[0]!r}; expected one of {', '.join(known)}")
    return [c for c in CLAIMS if c.id in set(ids)]


def run_audit(profile: Profile, seed: int, ids=None, jobs: int = 1) -> list[ClaimOutcome]:
    """Audit the selected claims (in parallel processes when ``jobs > 1``)."""
    specs = select(ids)
    if jobs > 1:
        from joblib import Parallel, delayed

        return list(Parallel(n_jobs=jobs)(delayed(audit_claim)(s, profile, seed) for s in specs))
    return [audit_claim(s, profile, seed) for s in specs]


TOLERANCE_NOTE = (
    f"A check counts as a violation only when its slack is below -({ABS_TOL:g} + the certified gap of the exact "
    "solver on that instance, plus the certificate of any inner fit); slack is bound - truth for upper bounds, "
    "truth - bound for lower bounds, -|bound - truth| for identities."
)
