"""The audit runner, verdicts, counterexamples and the report/CLI."""

import argparse
import json

import numpy as np
import pytest

from theory.claims import add_arguments, run
from theory.claims.audit import (
    HOLDS,
    IDENTITY_VERDICT,
    NEEDS_ASSUMPTION,
    UNINFORMATIVE,
    VERDICTS,
    VIOLATED,
    audit_claim,
    select,
)
from theory.claims.fixed import check_prop2
from theory.claims.instances import instance_grid, random_weights
from theory.claims.profiles import QUICK
from theory.claims.record import CONSISTENCY, IDENTITY, LOWER, OBSERVATION, UPPER, Check
from theory.claims.registry import CLAIM_IDS, ClaimSpec, Trial
from theory.bounds import expert_errors, fixed_mixture_bound
from theory.divergences import kl, mixture

EXPECTED_IDS = ("prop2", "thm14", "thm3", "jsd-identity", "thm3-regimes", "thm3-ensemble", "thm4-5",
                "least-favorable", "thm6", "thm7", "thm9", "lemma1", "alg1-rate", "thm18")


def test_every_claim_id_is_registered():
    assert set(CLAIM_IDS) == set(EXPECTED_IDS)


def false_prop2_trials(prof, rng):
    """A deliberately false bound: KL(D_lam || P_lam) <= (1/2) sum_k lam_k eps_k."""
    for inst in instance_grid(("random",), prof.sizes, prof.qualities, 1, rng):
        lam = random_weights(inst.p, rng, 2)
        checks = [Check("half of Prop. 2", UPPER, 0.5 * fixed_mixture_bound(w, expert_errors(inst.D, inst.P)),
                        kl(mixture(w, inst.D), mixture(w, inst.P)), quantities={"lam": w}) for w in lam]
        yield Trial(inst.describe(), inst.size, checks)


def test_false_bound_is_reported_violated_with_counterexample():
    spec = ClaimSpec("false", "half of Prop. 2", ("random",), false_prop2_trials)
    out = audit_claim(spec, QUICK, seed=0)
    assert out.verdict == VIOLATED
    assert out.worst_slack < 0 and out.violations > 0
    instance = out.counterexample["instance"]
    assert instance["p"] * instance["n"] == min(p * n for p, n in QUICK.sizes)
    # the stored numbers reproduce the violation
    D, P = np.array(instance["D"]), np.array(instance["P"])
    c = out.counterexample["violated_checks"][0]
    lam = np.array(c["quantities"]["lam"])
    assert kl(mixture(lam, D), mixture(lam, P)) > 0.5 * fixed_mixture_bound(lam, expert_errors(D, P))


def test_true_bound_holds():
    def trials(prof, rng):
        for inst in instance_grid(("random", "disjoint"), prof.sizes, prof.qualities, 1, rng):
            yield Trial(inst.describe(), inst.size, check_prop2(inst, random_weights(inst.p, rng, 2)))

    out = audit_claim(ClaimSpec("prop2", "Prop. 2", ("random", "disjoint"), trials), QUICK, seed=0)
    assert out.verdict == HOLDS and out.counterexample is None and out.worst_slack >= -1e-12


def fabricated(meets_flags, kind=LOWER, variant_bound=2.0):
    """truth 1 >= bound 0.5 where the assumption holds, 0 outside; the variant asks truth >= variant_bound."""
    def trials(prof, rng):
        for i, meets in enumerate(meets_flags):
            truth = 0.0 if meets is False else 1.0
            yield Trial({"i": i}, i + 1, [Check("part", kind, 0.5, truth, meets_assumption=meets,
                                                variant="raised", variant_bound=variant_bound),
                                          Check("obs", OBSERVATION, 10.0, 0.0)])

    return trials


def test_needs_assumption_when_failures_are_outside_it():
    spec = ClaimSpec("x", "x", ("r",), fabricated([True, False, True]), assumption="A")
    out = audit_claim(spec, QUICK, 0)
    assert out.verdict == NEEDS_ASSUMPTION
    assert out.counterexample["instance"] == {"i": 1}


def test_violated_when_a_failure_meets_the_assumption():
    spec = ClaimSpec("x", "x", ("r",), fabricated([False, False]), assumption="A")
    assert audit_claim(spec, QUICK, 0).verdict == VIOLATED
    spec = ClaimSpec("x", "x", ("r",), fabricated([False, None]), assumption="A")
    assert audit_claim(spec, QUICK, 0).verdict == VIOLATED


def test_high_probability_claim_allows_its_failure_rate():
    flags = [True] * 19 + [False]
    assert audit_claim(ClaimSpec("x", "x", ("r",), fabricated(flags), allowed_rate=0.05), QUICK, 0).verdict == HOLDS
    assert audit_claim(ClaimSpec("x", "x", ("r",), fabricated(flags), allowed_rate=0.01), QUICK, 0).verdict == VIOLATED


def test_observations_do_not_count():
    out = audit_claim(ClaimSpec("x", "x", ("r",), fabricated([True, True])), QUICK, 0)
    assert out.verdict == HOLDS and out.checks == 2
    assert out.power["variant_violations"] == 2 and out.power["variant_checks"] == 2


def test_check_that_cannot_reject_its_variant_is_uninformative():
    """The variant truth >= 0.9 is true as well (truth 1): the check could not have failed."""
    out = audit_claim(ClaimSpec("x", "x", ("r",), fabricated([True, True], variant_bound=0.9)), QUICK, 0)
    assert out.verdict == UNINFORMATIVE
    assert out.power == {**out.power, "variant_violations": 0, "variant_checks": 2, "rejected": False}
    assert [p["verdict"] for p in out.parts] == [UNINFORMATIVE, "observation"]


def test_checks_true_by_construction_are_identities():
    def trials(prof, rng):
        yield Trial({}, 1, [Check("a", LOWER, 0.0, 1.0, role=IDENTITY, variant="v", variant_bound=2.0),
                            Check("b", UPPER, 1.0, 1.0, role=CONSISTENCY)])

    out = audit_claim(ClaimSpec("x", "x", ("r",), trials), QUICK, 0)
    assert out.verdict == IDENTITY_VERDICT
    # identity parts report their variant's rejections, but they give the claim no power
    assert out.parts[0]["variant_violations"] == 1 and out.power["variant_checks"] == 0


def test_power_ignores_checks_outside_the_assumption():
    spec = ClaimSpec("x", "x", ("r",), fabricated([True, False, True]), assumption="A")
    out = audit_claim(spec, QUICK, 0)
    assert out.power["variant_checks"] == 2


def test_secondary_summary_violations_are_worded_as_such():
    def trials(prof, rng):
        yield Trial({}, 1, [Check("a", UPPER, 0.0, 1.0)])

    secondary = audit_claim(ClaimSpec("x", "x", ("r",), trials), QUICK, 0)
    assert secondary.verdict == VIOLATED and secondary.source == "secondary summary"
    assert "as summarised does not hold" in secondary.verdict_note
    paper = audit_claim(ClaimSpec("x", "x", ("r",), trials, source="paper text"), QUICK, 0)
    assert paper.verdict_note == "statement from the paper's own text"
    with pytest.raises(ValueError, match="source"):
        ClaimSpec("x", "x", ("r",), trials, source="hearsay")


def test_unknown_claim_id_is_rejected():
    with pytest.raises(ValueError, match="unknown claim id 'thm99'"):
        select(["thm99"])


def cli(argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return run(parser.parse_args(argv))


def test_quick_json_report_structure_and_reproducibility(tmp_path, capsys):
    argv = ["--quick", "--json", "--only", "prop2", "jsd-identity", "lemma1", "--seed", "3"]
    assert cli(argv + ["--out", str(tmp_path / "r.md")]) == 0
    first = json.loads(capsys.readouterr().out)
    assert [o["id"] for o in first] == ["prop2", "jsd-identity", "lemma1"]
    for o in first:
        assert {"id", "statement", "verdict", "source", "power", "instances", "checks", "violations",
                "worst_slack", "counterexample"} <= set(o)
        assert o["verdict"] in VERDICTS
        assert o["instances"] > 0
        assert o["environment"]["seed"] == 3
    assert [o["source"] for o in first] == ["paper text", "secondary summary", "paper text"]
    assert [o["verdict"] for o in first] == [HOLDS, IDENTITY_VERDICT, NEEDS_ASSUMPTION]
    assert first[0]["power"]["variant_violations"] > 0
    lemma = first[2]
    assert lemma["counterexample"]["instance"]["P"] == [[0.9, 0.1]]
    markdown = (tmp_path / "r.md").read_text()
    assert "| lemma1 | paper text | **needs-assumption** | 17 |" in markdown
    assert json.loads((tmp_path / "r.json").read_text())[0]["id"] == "prop2"
    assert cli(argv) == 0
    second = json.loads(capsys.readouterr().out)
    timings = ("seconds", "cpu_seconds")
    strip = [{k: v for k, v in o.items() if k not in timings} for o in first]
    assert strip == [{k: v for k, v in o.items() if k not in timings} for o in second]


def test_cli_bad_claim_id_exits_2(capsys):
    assert cli(["--quick", "--only", "thm99"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "thm99" in err[0]


def test_cli_unwritable_output_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli(["--quick", "--only", "prop2", "--out", str(blocker / "r.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write" in err[0]


def test_to_jsonable_handles_numpy_types():
    from theory.claims.record import to_jsonable

    out = to_jsonable({"a": np.array([0.1234567890123456, np.inf]), "b": np.bool_(True), "c": np.int64(3),
                       "d": np.array([1, 2])})
    assert json.loads(json.dumps(out)) == {"a": [0.123456789012, "inf"], "b": True, "c": 3, "d": [1, 2]}
