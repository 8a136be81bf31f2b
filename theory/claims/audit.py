"""The audit: run every claim over its instances and reach a verdict with the evidence."""

from __future__ import annotations

import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from theory.claims.profiles import Profile
from theory.claims.record import ABS_TOL, OBSERVATION, to_jsonable
from theory.claims.registry import CLAIMS, ClaimSpec, Trial
from theory.errors import InvalidOptionError

HOLDS = "holds"
VIOLATED = "violated"
NEEDS_ASSUMPTION = "needs-assumption"

#: How many violating checks of the counterexample the report keeps.
COUNTEREXAMPLE_CHECKS = 3


@dataclass
class ClaimOutcome:
    """The audit of one claim: verdict, worst slack, per-part statistics and counterexample."""

    id: str
    statement: str
    regimes: tuple[str, ...]
    verdict: str
    instances: int
    checks: int
    violations: int
    worst_slack: float | None
    assumption: str | None
    parts: list[dict[str, Any]]
    counterexample: dict[str, Any] | None
    part_counterexamples: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return to_jsonable({
            "id": self.id,
            "statement": self.statement,
            "regimes": list(self.regimes),
            "verdict": self.verdict,
            "instances": self.instances,
            "checks": self.checks,
            "violations": self.violations,
            "worst_slack": self.worst_slack,
            "assumption": self.assumption,
            "parts": self.parts,
            "counterexample": self.counterexample,
            "part_counterexamples": self.part_counterexamples,
            "summary": self.summary,
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
        })


def claim_rng(seed: int, claim_id: str) -> np.random.Generator:
    """Independent, reproducible stream per claim (the same whichever claims are selected)."""
    return np.random.default_rng([seed, zlib.crc32(claim_id.encode())])


def part_statistics(trials: list[Trial]) -> list[dict[str, Any]]:
    """Per part of the claim: kind, checks, worst slack, violations inside/outside the assumption."""
    parts: dict[str, list] = defaultdict(list)
    for t in trials:
        for c in t.checks:
            parts[c.part].append(c)
    out = []
    for name, checks in parts.items():
        slacks = np.array([c.slack for c in checks])
        viol = [c for c in checks if c.violated]
        out.append({
            "part": name,
            "kind": checks[0].kind,
            "checks": len(checks),
            "worst_slack": float(slacks.min()),
            "violations": len(viol),
            "violations_meeting_assumption": sum(c.meets_assumption is True for c in viol),
            "violations_outside_assumption": sum(c.meets_assumption is False for c in viol),
        })
    return out


def verdict(spec: ClaimSpec, trials: list[Trial]) -> str:
    """holds / violated / needs-assumption.

    A check is violated when its slack is below ``-tol`` (``ABS_TOL`` plus certified
    solver gaps). The claim holds if no check is violated, or, for a high-probability
    claim, if the fraction of violating instances is within ``allowed_rate``. It needs
    an assumption if every violated check is on an instance outside the claim's recorded
    assumption while instances meeting it were tried; otherwise it is violated.
    """
    checks = [c for t in trials for c in t.checks if c.kind != OBSERVATION]
    violated = [c for c in checks if c.violated]
    failing = sum(any(c.violated for c in t.checks) for t in trials)
    if not violated or (trials and failing / len(trials) <= spec.allowed_rate):
        return HOLDS
    if (spec.assumption and all(c.meets_assumption is False for c in violated)
            and any(c.meets_assumption is True for c in checks)):
        return NEEDS_ASSUMPTION
    return VIOLATED


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
    return ClaimOutcome(
        id=spec.id,
        statement=spec.statement,
        regimes=spec.regimes,
        verdict=verdict(spec, trials),
        instances=len(trials),
        checks=len(checks),
        violations=sum(c.violated for c in checks),
        worst_slack=float(min(slacks)) if slacks else None,
        assumption=spec.assumption,
        parts=part_statistics(trials),
        counterexample=smallest_counterexample(trials),
        part_counterexamples=part_counterexamples(trials),
        summary=spec.summarise(trials) if spec.summarise else {},
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
