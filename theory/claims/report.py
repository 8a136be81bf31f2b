"""The audit report: JSON (a list of claim objects) and a markdown table with findings."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from typing import Any

from theory.claims.audit import HOLDS, TOLERANCE_NOTE, ClaimOutcome

PACKAGES = ("numpy", "scipy", "cvxpy", "clarabel")


def environment(seed: int, profile: str) -> dict[str, Any]:
    """Seed, profile and package versions, recorded in every report."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {"seed": seed, "profile": profile, "python": platform.python_version(), "versions": versions,
            "tolerance": TOLERANCE_NOTE}


def to_json(outcomes: list[ClaimOutcome], env: dict[str, Any]) -> str:
    """A JSON list with one object per claim; the environment rides on every object."""
    return json.dumps([{**o.as_dict(), "environment": env} for o in outcomes], indent=1)


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3g}"
    return str(x)


def _compact(value, width: int = 400) -> str:
    text = json.dumps(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def to_markdown(outcomes: list[ClaimOutcome], env: dict[str, Any]) -> str:
    """A table readable by eye, then one section per claim whose verdict is not "holds"."""
    lines = ["# Claims audit", "",
             f"Seed {env['seed']}, profile `{env['profile']}`, Python {env['python']}, "
             + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".", "",
             env["tolerance"], "",
             "| claim | verdict | instances | checks | violations | worst slack | regimes | CPU s |",
             "|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        lines.append(f"| {o.id} | **{o.verdict}** | {o.instances} | {o.checks} | {o.violations} | "
                     f"{_fmt(o.worst_slack)} | {', '.join(o.regimes)} | {o.cpu_seconds:.1f} |")
    lines.append("")
    for o in outcomes:
        lines += [f"## {o.id}: {o.verdict}", "", o.statement, ""]
        if o.assumption:
            lines += [f"Assumption tested: {o.assumption}.", ""]
        lines += ["| part | kind | checks | worst slack | violations (meeting assumption / outside) |",
                  "|---|---|---|---|---|"]
        for p in o.parts:
            lines.append(f"| {p['part']} | {p['kind']} | {p['checks']} | {_fmt(p['worst_slack'])} | "
                         f"{p['violations']} ({p['violations_meeting_assumption']} / "
                         f"{p['violations_outside_assumption']}) |")
        lines.append("")
        if o.summary:
            lines += _summary_lines(o.summary)
        if o.verdict != HOLDS and o.counterexample:
            lines += ["Smallest counterexample (instance arrays in full; rows are domains/experts):", "",
                      "```", _compact(o.counterexample["instance"], 4000), "```", ""]
            lines += [_check_line(c) for c in o.counterexample["violated_checks"]]
            lines.append("")
            others = [pc for pc in o.part_counterexamples
                      if pc["instance"] != o.counterexample["instance"]]
            for pc in others:
                lines += [f"Smallest counterexample for the part \"{pc['part']}\":", "", "```",
                          _compact(pc["instance"], 4000), "```", "", _check_line(pc["check"]), ""]
    return "\n".join(lines) + "\n"


def _check_line(c: dict[str, Any]) -> str:
    return (f"- {c['part']}: bound {c['bound']:.6g}, truth {c['truth']:.6g}, slack {c['slack']:.3g} "
            f"(tol {c['tol']:.2g}, meets assumption: {c['meets_assumption']}); {_compact(c['quantities'])}")


def _summary_lines(summary: dict[str, Any]) -> list[str]:
    out = []
    table = summary.get("table")
    if table:
        keys = list(table[0])
        out += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        out += ["| " + " | ".join(_fmt(row[k]) for k in keys) + " |" for row in table]
        out.append("")
    rest = {k: v for k, v in summary.items() if k != "table"}
    if rest:
        out += ["Summary: " + ", ".join(f"{k} = {_fmt(v) if not isinstance(v, list) else _compact(v, 300)}"
                                        for k, v in rest.items()), ""]
    return out
