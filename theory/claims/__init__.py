"""Numerical audit of the paper's claims: every bound against the true quantity, with a verdict.

``python -m theory claims [--quick] [--json] [--out report.md]`` runs the audit over
random instances of every regime and writes a table of verdicts (holds / violated /
needs-assumption) with the smallest counterexample of every finding.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from theory.commandline import ArgumentParser, add_out_argument, positive, run_main, save_text
from theory.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``claims`` subcommand."""
    parser.add_argument("--quick", action="store_true", help="profile quick: small instance grid (under a minute on 2 cores); default: profile full")
    parser.add_argument("--json", action="store_true", help="print the JSON report instead of the markdown table")
    add_out_argument(parser, "the markdown report (and its JSON beside it, suffix .json)", creates_folder=True,
                     type=Path)
    parser.add_argument("--readme", type=Path, metavar="README",
                        help="rewrite the generated claims block of this README from the report")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--only", nargs="+", metavar="ID", help="audit only these claim ids")
    parser.add_argument("--jobs", type=positive(int), default=2, help="claims audited in parallel processes")


def run(args: argparse.Namespace) -> int:
    """Run the audit; print the report; exit 0 (findings are results), 2 on bad options."""
    from theory.claims.audit import run_audit
    from theory.claims.profiles import get_profile
    from theory.claims.report import environment, to_json, to_markdown

    try:
        profile = get_profile("quick" if args.quick else "full")
        outcomes = run_audit(profile, args.seed, args.only, jobs=args.jobs)
    except InputError as exc:
        print(f"theory claims: error: {exc}", file=sys.stderr)
        return 2
    env = environment(args.seed, profile.name)
    markdown, js = to_markdown(outcomes, env), to_json(outcomes, env)
    if args.out:
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            save_text(args.out, markdown)
            save_text(args.out.with_suffix(".json"), js)
        except (OSError, InputError) as exc:
            print(f"theory claims: error: cannot write the report to {args.out}: {getattr(exc, 'strerror', None) or exc}",
                  file=sys.stderr)
            return 2
    if args.readme:
        from theory.claims.readme import update_readme

        try:
            update_readme(args.readme, json.loads(js))
        except (OSError, InputError) as exc:
            print(f"theory claims: error: cannot update {args.readme}: {getattr(exc, 'strerror', None) or exc}",
                  file=sys.stderr)
            return 2
    print(js if args.json else markdown)
    return 0


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m theory.claims", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_main("python -m theory.claims", lambda: run(parser.parse_args(argv)))
