"""The audit report: JSON (a list of claim objects) and a markdown table with findings."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from typing import Any

from theory.claims.audit import NEEDS_ASSUMPTION, TOLERANCE_NOTE, VIOLATED, ClaimOutcome

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
             VERDICT_NOTE, "",
             "| claim | source | verdict | instances | checks | violations | power | worst slack | regimes | CPU s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        lines.append(f"| {o.id} | {o.source} | **{o.verdict}** | {o.instances} | {o.checks} | {o.violations} | "
                     f"{power_text(o.power)} | {_fmt(o.worst_slack)} | {', '.join(o.regimes)} | "
                     f"{o.cpu_seconds:.1f} |")
    lines.append("")
    for o in outcomes:
        lines += [f"## {o.id}: {o.verdict}", "", o.statement, "",
                  f"Source: {o.source}; {o.verdict_note}.", ""]
        if o.assumption:
            lines += [f"Assumption tested: {o.assumption}.", ""]
        lines += [f"- {topic}: {text}." for topic, text in o.notes.items()]
        if o.notes:
            lines.append("")
        lines += ["| part | role | kind | checks | worst slack | violations (meeting assumption / outside) | "
                  "false variant | variant rejected | part verdict |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for p in o.parts:
            rejected = f"{p['variant_violations']}/{p['variant_checks']}" if p["variant"] else "-"
            lines.append(f"| {p['part']} | {p['role']} | {p['kind']} | {p['checks']} | {_fmt(p['worst_slack'])} | "
                         f"{p['violations']} ({p['violations_meeting_assumption']} / "
                         f"{p['violations_outside_assumption']}) | {p['variant'] or '-'} | {rejected} | "
                         f"{p['verdict']} |")
        lines.append("")
        if o.summary:
            lines += _summary_lines(o.summary)
        if o.verdict in (VIOLATED, NEEDS_ASSUMPTION) and o.counterexample:
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


VERDICT_NOTE = (
    "Verdicts: **holds** (no violation, and the same checks rejected a deliberately false variant of the claim: "
    "the power column, rejected / checks where the claim held), **uninformative** (no violation, but the false "
    "variant was never rejected either: the check could not have failed), **identity** (every part is true by "
    "construction or follows from the solver's certificate: not empirical support), **needs-assumption**, "
    "**violated**. A violated verdict on a statement known only from a secondary summary means that the "
    "statement as summarised does not hold; the paper's exact statement is unknown."
)


def power_text(power: dict[str, Any]) -> str:
    """``rejected / checks`` of the claim's false variants (evidence parts), or ``-`` without any."""
    if not power["parts"]:
        return "-"
    return f"{power['variant_violations']}/{power['variant_checks']}"


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
    for name, named in summary.get("named", {}).items():
        out += [f"Fixed instance \"{name}\": D = {json.dumps(named['D'])}, P = {json.dumps(named['P'])}", ""]
        out += [f"- {c['part']}: bound {c['bound']:.6g}, truth {c['truth']:.6g}"
                + (" (violated)" if c["violated"] else "") for c in named["checks"]]
        out.append("")
    rest = {k: v for k, v in summary.items() if k not in ("table", "named")}
    if rest:
        out += ["Summary: " + ", ".join(f"{k} = {_fmt(v) if not isinstance(v, list) else _compact(v, 300)}"
                                        for k, v in rest.items()), ""]
    return out
