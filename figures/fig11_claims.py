"""Figure 11 (first half): the claims audit report (``python -m theory.claims``)."""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd

from figures.external import run_module
from figures.pipeline import Caption, Context

ARGS = {"quick": ["--quick"], "full": []}


def run(ctx: Context) -> Caption:
    cfg = {"module": "theory.claims", "args": [*ARGS[ctx.profile], "--seed", "0", "--out", "claims.md"]}
    (result,) = ctx.sweep("claims", run_module, [cfg])
    ctx.results.mkdir(parents=True, exist_ok=True)
    ctx.write_text("claims.md", result["files"]["claims.md"])
    ctx.write_text("claims.json", result["files"]["claims.json"])
    claims = json.loads(result["files"]["claims.json"])
    table = pd.DataFrame([{**{k: c.get(k) for k in ("id", "source", "verdict", "instances", "checks", "violations",
                                                    "worst_slack")},
                           "power": c["power"]["variant_violations"], "power_checks": c["power"]["variant_checks"],
                           "statement": c["statement"]} for c in claims])
    ctx.write_table("claims", table, configs=[cfg], results=[result], extra={"claims_seed": 0})
    counts = Counter(c["verdict"] for c in claims)
    # identities hold by construction: neither support nor a finding
    findings = [f"{c['id']} ({c['verdict']})" for c in claims if c["verdict"] not in ("holds", "identity")]
    text = (f"Claims audit ({'quick' if ctx.profile == 'quick' else 'full'}): {len(claims)} claims, "
            + ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
            + (f"; findings: {', '.join(findings)}" if findings else "; every claim held")
            + "; details in results/claims.md")
    return Caption(text, None if findings else True, "claims audit", output="claims.md")
