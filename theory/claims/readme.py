"""The claims part of the README's "What the suite found", rendered from the audit's JSON report.

Every number in the block comes from the report (``results/claims_full.json``);
``python -m theory claims --out results/claims_full.md --readme README.md`` rewrites
the block between :data:`BEGIN` and :data:`END`, and a test checks that the committed
block is what the committed report renders to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from theory import commandline

BEGIN = "<!-- claims audit: generated from results/claims_full.json by theory.claims.readme; do not edit -->"
END = "<!-- end of the generated claims audit -->"

REPORT = "results/claims_full.md"


def _g(x, digits: int = 3) -> str:
    return f"{x + 0.0:.{digits}g}"  # + 0.0: no "-0"


def _part(claim: dict[str, Any], prefix: str) -> dict[str, Any]:
    for p in claim["parts"]:
        if p["part"].startswith(prefix):
            return p
    raise KeyError(f"claim {claim['id']} has no part starting with {prefix!r}")


def _part_counterexample(claim: dict[str, Any], prefix: str) -> dict[str, Any] | None:
    for pc in claim["part_counterexamples"]:
        if pc["part"].startswith(prefix):
            return pc
    return None


def _named(claim: dict[str, Any], name: str, prefix: str) -> dict[str, Any]:
    for c in claim["summary"]["named"][name]["checks"]:
        if c["part"].startswith(prefix):
            return c
    raise KeyError(f"claim {claim['id']}: no check {prefix!r} on the instance {name!r}")


def _vec(row) -> str:
    return "(" + ", ".join(f"{x:g}" for x in row) + ")"


def _instance_text(claim: dict[str, Any], name: str) -> str:
    named = claim["summary"]["named"][name]
    return ", ".join([f"D{k + 1} = {_vec(d)}" for k, d in enumerate(named["D"])]
                     + [f"pi{k + 1} = {_vec(p)}" for k, p in enumerate(named["P"])])


def _outside(p: dict[str, Any], what: str = "the assumption") -> str:
    """"all outside the assumption", or how many were not, from the part's counts."""
    inside = p["violations"] - p["violations_outside_assumption"]
    return f"all outside {what}" if inside == 0 else f"{inside} of them meeting {what}"


def _never(p: dict[str, Any], text: str) -> str:
    """``text`` if the part had no violation, else the count."""
    return text if p["violations"] == 0 else f"{text} except at {p['violations']} checks"


def _counts(p: dict[str, Any]) -> str:
    return f"{p['violations']} of {p['checks']} checks"


def _power(p: dict[str, Any]) -> str:
    return f"{p['variant_violations']}/{p['variant_checks']}"


def _thm3_ensemble(c) -> str:
    r1, r2 = _part(c, "reading 1"), _part(c, "reading 2")
    der = _part(c, "identical experts: KL")
    pc = _part_counterexample(c, "reading 1")
    neither = sum(row["violations"] for row in c["summary"]["table"]
                  if row["part"] == r1["part"] and row["regime"] in ("random", "overlapping"))
    q = pc["check"]["quantities"]
    eps = ", ".join(_g(e, 4) for e in q["eps"])
    return (f"**thm3-ensemble (secondary summary): `sum_k sigma_k eps_k` as summarised does not bound the robust "
            f"gate under the reading \"identical experts\"** ({r1['violations_meeting_assumption']} violations "
            f"meeting it): identical experts leave every gate at q = pi, so the robust value is max eps, while "
            f"`sum sigma_k eps_k = LSE(eps) - H(sigma)` (Thm 3's bound at sigma, JSD dropped) is below max eps "
            f"whenever the errors differ; e.g. eps = ({eps}), `sum sigma eps` = {_g(q['sigma_eps'], 4)}, robust "
            f"value {_g(q['robust_value'], 4)}. `sum lam*_k eps_k - JSD_lam` never failed with identical experts "
            f"({der['violations_meeting_assumption']} violations), but it is Thm 3's own bound specialised, so "
            f"that is guaranteed by Thm 3. Under the reading \"identical domains\" the summary is never violated "
            f"({r2['violations_meeting_assumption']} violations meeting it; it follows from convexity; part verdict "
            f"{r2['verdict']}, power {_power(r2)}); neither formula bounds general overlapping experts "
            f"({neither} violations on the random and overlapping instances).")


def _thm14(c) -> str:
    harmless = _named(c, "harmless leak", "best static")
    oneway = _named(c, "one-way leak", "best static")
    barrier = _part(c, "best static")
    softmax = _named(c, "harmless leak", "sigma = softmax")
    return (f"**thm14 (paper text, {c['verdict']}) needs its experts to put no mass on another domain's support**; mass on "
            f"outcomes no domain uses is harmless ({_instance_text(c, 'harmless leak')}: best static value "
            f"{_g(harmless['truth'], 4)}, `log sum exp(eps)` = {_g(harmless['bound'], 4)}, softmax weights "
            f"{'attain it' if not softmax['violated'] else 'do not attain it'}), but one expert leaking onto the "
            f"other domain's support already breaks it ({_instance_text(c, 'one-way leak')}: best static value "
            f"{_g(oneway['truth'], 4)} vs {_g(oneway['bound'], 4)}); {barrier['violations']} violations, "
            f"{_outside(barrier)}, power {_power(barrier)}.")


def _thm3_regimes(c) -> str:
    ce = _named(c, "log p counterexample", "disjoint domains, pi_k")
    summarised = _part(c, "disjoint domains, pi_k")
    floor = _part(c, "disjoint domains: robust value >= log p")
    inside = _part(c, "disjoint domains, mean domain in the hull")
    return (f"**thm3-regimes (secondary summary, {c['verdict']}): \"disjoint domains with pi_k >= D_k/p reach log p\" needs more.** "
            f"For disjoint domains the robust value is always >= log p ({_counts(floor)} violated), with equality iff "
            f"`(1/p) sum_k D_k` lies in the pointwise hull of the experts ({_counts(inside)} violated on instances "
            f"inside it). {_instance_text(c, 'log p counterexample')} satisfy pi_k >= D_k/2 but have value {_g(ce['truth'], 4)} > log 2 = "
            f"{_g(ce['bound'], 4)}; {summarised['violations']} of {summarised['checks']} such instances exceed "
            f"log p, {_outside(summarised, 'the hull')}.")


def _thm7(c) -> str:
    refit = _part(c, "refit on D_lam")
    mixture = _part(c, "best gate <= refit mixture of experts")
    return (f"**thm7 (secondary summary, {c['verdict']}) needs realisable experts (pi_k = D_k)**: refitting a "
            f"mixture-closed family on D_lam beats the modular model by up to {_g(-c['worst_slack'])} nats with "
            f"imperfect experts ({refit['violations']} violations, {_outside(refit)}); with perfect experts both "
            f"sides are 0 by construction, and "
            + _never(mixture, "the best gate beats the refitted mixture of the experts themselves (an identity)")
            + ".")


def _lemma1(c) -> str:
    support = _part(c, "G1 with the gate on the data support")
    remedies = [_part(c, "G1 with the gate on all outcomes"), _part(c, "G1 after renormalising")]
    detector = _part(c, "require_nonempty_G1")
    return (f"**lemma1 (paper text, {c['verdict']})**: the paper's own example (data on {{a}}, expert a: 0.9, "
            f"b: 0.1) has an empty G1 when the gate lives on the data support ({support['violations']} of "
            f"{support['checks']} instances, {_outside(support, 'normalised experts')}); "
            + _never(detector, "the suite detects it") + ", and "
            + _never({"violations": sum(r["violations"] for r in remedies)},
                     "both remedies (gate on all outcomes, experts renormalised on the support) work by construction")
            + ".")


def _thm18(c) -> str:
    eq = _part(c, "sequences: KL(pi_g||r_gamma) =")
    le = _part(c, "sequences: KL(pi_g||r_gamma) <=")
    joint = _part(c, "joint space")
    t17 = _part(c, "Thm 17")
    return (f"**thm18 (secondary summary, {c['verdict']}): \"=\" on sequences as summarised**: it fails at "
            f"{eq['violations_meeting_assumption']} checks with static gates, where only \"<=\" holds (data "
            f"processing); with input-dependent gates even \"<=\" fails ({le['violations_outside_assumption']} "
            f"checks) and so does Thm 17 ({t17['violations_outside_assumption']}). On the joint space of (sequence, "
            f"expert path) the equality {'holds exactly' if joint['violations'] == 0 else 'fails'} "
            f"({joint['violations']} of {joint['checks']} checks violated, worst slack {_g(joint['worst_slack'])}: "
            f"the chain rule), which may be what the paper's \"=\" means.")


def _thm4_5(c) -> str:
    s = c["summary"]
    p = _part(c, "V(simplex) - V(Lambda) <= L d_H, L a priori")
    return (f"**thm4-5 (secondary summary, {c['verdict']})**: with a constant that does not depend on the "
            f"solution (half the range of the KLs over the pointwise hull; finite on "
            f"{s['a_priori_finite_fraction']:.0%} of the checks, median {_g(s['a_priori_median'])}), "
            + _never(p, "the bound holds") + f", but the drop in value reaches at most {s['max_ratio_to_a_priori']:.1%} of it and the variant "
            f"10% lower is rejected at {_power(p)} checks. The largest observed ratio (V(simplex) - V(Lambda)) / "
            f"d_H, {_g(s['lipschitz_lower_bound'])}, is a lower bound on any valid constant.")


def _thm9(c) -> str:
    rows = c["summary"]["table"]
    wide = [r for r in rows if r["instance"] == "wide-hull"]
    other = [r for r in rows if r["instance"] != "wide-hull"]
    above_wide = max(r["worst_gate_above_concentration"] for r in wide)
    above_other = max(r["worst_gate_above_concentration"] for r in other)
    other_text = ("in none of the draws" if above_other == 0
                  else f"in up to {above_other:.0%} of the draws of a cell")
    loose = min(r["min_bound"] / max(r["max_gap_worst_gate"], 1e-12) for r in rows)
    learned = max(r["learned_above_concentration"] for r in rows)
    learned_text = ("never exceeded" if learned == 0
                    else f"exceeded in up to {learned:.0%} of the draws of a cell")
    return (f"**thm9 (secondary summary, {c['verdict']})**: on the overlapping instance (M = {_g(other[0]['M'])}) "
            f"the worst gate of the class exceeds the concentration term alone {other_text}"
            + (", so there the gate-complexity term never matters" if above_other == 0 else "")
            + f"; on a wide-hull instance (experts on blocks with a floor, M = {_g(wide[0]['M'])}, m << n) the "
            f"worst gate exceeds it in up to {above_wide:.0%} of draws (power {c['power']['variant_violations']}/"
            f"{c['power']['variant_checks']}), but the full bound is then at least {_g(loose)}x the gap "
            f"(the e^M factor). The learned robust gate {learned_text} the concentration term alone.")


def _alg1(c) -> str:
    slopes = c["summary"]["slopes"]
    return (f"Algorithm 1's averaged-iterate gap falls as T^{_g(max(slopes))}..T^{_g(min(slopes))} "
            f"(the O(sqrt(log p / T)) rate; the O(1/T) variant is rejected at {c['power']['variant_violations']}/"
            f"{c['power']['variant_checks']} instances).")


def _least_favorable(c) -> str:
    return (f"lam* is least favourable (power {c['power']['variant_violations']}/{c['power']['variant_checks']}; its "
            f"support check follows from the certificate); a monolithic model trained on lam* weights beats uniform "
            f"weights on worst-domain KL in only {c['summary']['fraction_positive']:.1%} of instances.")


FINDINGS = {"thm3-ensemble": _thm3_ensemble, "thm14": _thm14, "thm3-regimes": _thm3_regimes, "thm7": _thm7,
            "lemma1": _lemma1, "thm18": _thm18, "thm4-5": _thm4_5, "thm9": _thm9, "alg1-rate": _alg1,
            "least-favorable": _least_favorable}


def render(claims: list[dict[str, Any]]) -> str:
    """The README block (markdown, without the markers) for the audit report ``claims``."""
    env = claims[0]["environment"]
    cpu = sum(c["cpu_seconds"] for c in claims)
    lines = [f"**Claims audit**, `make claims` (`python -m theory claims`, profile `{env['profile']}`, seed "
             f"{env['seed']}, {cpu:.0f} CPU s in all). Each claim is computed on both sides (bound and exact truth, "
             f"from certified solvers); a check fails only below -(1e-7 + the certified solver gap). Every claim "
             f"also faces a deliberately false variant on the same instances (power: rejected / checks where the "
             f"claim held); a claim holds only if its checks reject that variant, and checks true by construction "
             f"are labelled `identity`. Source: whether the statement is known from the paper's own text or only "
             f"from a secondary summary. Full report: [{REPORT}]({REPORT}) (JSON beside it).", "",
             "| claim | source | verdict | power | instances | checks | violations | worst slack |",
             "|---|---|---|---|---|---|---|---|"]
    for c in claims:
        power = (f"{c['power']['variant_violations']}/{c['power']['variant_checks']}" if c["power"]["parts"]
                 else "-")
        worst = "-" if c["worst_slack"] is None else _g(float(c["worst_slack"]))
        lines.append(f"| {c['id']} | {c['source']} | **{c['verdict']}** | {power} | {c['instances']} | "
                     f"{c['checks']} | {c['violations']} | {worst} |")
    lines += ["", "What the audit found (each with its instance in the report):"]
    by_id = {c["id"]: c for c in claims}
    for cid, finding in FINDINGS.items():
        if cid in by_id:
            lines.append("- " + finding(by_id[cid]))
    for c in claims:
        if c["id"] not in FINDINGS and c["verdict"] in ("violated", "needs-assumption", "uninformative"):
            lines.append(f"- **{c['id']} ({c['source']}): {c['verdict']}**; {c['verdict_note']}.")
    identities = [c["id"] for c in claims if c["verdict"] == "identity"]
    if identities:
        lines.append(f"- True by construction, not evidence: {', '.join(identities)}.")
    return "\n".join(lines) + "\n"


def replace_block(text: str, block: str) -> str:
    """``text`` with the part between :data:`BEGIN` and :data:`END` replaced by ``block``."""
    return commandline.replace_block(text, block, BEGIN, END, what="claims")


def current_block(text: str) -> str:
    """The generated block currently between the markers."""
    return commandline.current_block(text, BEGIN, END, what="claims")


def update_readme(path: Path, claims: list[dict[str, Any]]) -> None:
    """Rewrite the generated claims block of the README at ``path``."""
    path = Path(path)
    path.write_text(replace_block(path.read_text(), render(claims)))


def main(argv=None) -> int:
    """``python -m theory.claims.readme REPORT.json README.md``: re-render the block from a saved report."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="python -m theory.claims.readme", description=main.__doc__)
    parser.add_argument("report", type=Path, help="the audit's JSON report (results/claims_full.json)")
    parser.add_argument("readme", type=Path, help="the README whose generated claims block is rewritten")
    args = parser.parse_args(argv)
    try:
        update_readme(args.readme, json.loads(args.report.read_text()))
    except (OSError, ValueError, KeyError) as exc:
        print(f"theory.claims.readme: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
