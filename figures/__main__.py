"""Regenerate every figure, table and the claims report.

    python -m figures [--profile quick|full] [--only NAME[,NAME]] [--list] [--jobs N]
                      [--scheduler local|dask] [--dask-address ADDR] [--force] [--results DIR]

Outputs go to ``results/``: ``figures/*.png``, ``tables/*.csv`` (each with a
``.provenance.json``), ``figures/captions.json``, ``summary.md``, the claims report
and benchmark tables. Results are cached in ``results/cache`` by a hash of their
configuration; ``--force`` recomputes them. Exit status (:mod:`theory.commandline`):
0 when every selected figure was produced, 1 when one failed, 2 on bad options (one
line on stderr), 130 when interrupted.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from figures import registry
from figures.cache import ResultCache
from figures.provenance import code_fingerprint
from figures.pipeline import PROFILES, Context, run_figures
from figures.sweep import SCHEDULERS, SweepRunner
from theory.commandline import EXIT_FAILED, EXIT_OK, ArgumentParser, run_main
from theory.errors import InputError

PROG = "python -m figures"


def build_parser() -> ArgumentParser:
    ap = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    ap.add_argument("--profile", choices=PROFILES, default="quick",
                    help="quick (minutes on 2 CPU cores) or full (paper-scale settings)")
    ap.add_argument("--only", metavar="NAME[,NAME]", help="run only these figures (see --list)")
    ap.add_argument("--list", action="store_true", help="list the figures and exit")
    ap.add_argument("--jobs", type=int, default=1, help="parallel workers for sweeps (checked by the runner)")
    ap.add_argument("--scheduler", choices=SCHEDULERS, default="local",
                    help="local: joblib processes; dask: a Dask cluster (LocalCluster without --dask-address)")
    ap.add_argument("--dask-address", metavar="ADDR", help="address of a running Dask scheduler")
    ap.add_argument("--force", action="store_true", help="ignore cached results and recompute")
    ap.add_argument("--results", type=Path, default=Path("results"),
                    help="output folder: figures/, tables/ (each file with its .provenance.json), summary.md, cache/")
    ap.add_argument("--no-progress", action="store_true", help="hide progress bars")
    ap.add_argument("--readme", type=Path, metavar="README",
                    help="afterwards, rewrite the generated figure list of this README from captions.json")
    return ap


def main(argv=None) -> int:
    """Parse ``argv`` and run the selected figures; exit status by :mod:`theory.commandline`."""
    return run_main(PROG, lambda: _main(argv))


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        for name, _, title in registry.ENTRIES:
            print(f"{name:18s} {title}")
        return EXIT_OK
    entries = _selected(args.only)
    runner = SweepRunner(jobs=args.jobs, scheduler=args.scheduler, address=args.dask_address,
                         progress=not args.no_progress)
    ctx = Context(profile=args.profile, results=args.results,
                  cache=ResultCache(args.results / "cache", force=args.force, salt=code_fingerprint()), runner=runner)
    start = time.perf_counter()
    outcome = run_figures(registry.load(entries), ctx, order=registry.NAMES)
    failed = [name for name, o in outcome.items() if not o["ok"]]
    print(f"{len(outcome) - len(failed)}/{len(outcome)} figures in {time.perf_counter() - start:.0f} s "
          f"(profile {args.profile}); summary in {args.results / 'summary.md'}")
    if args.readme is not None:
        from figures.readme import update_readme

        update_readme(args.readme, args.results / "figures" / "captions.json", registry.NAMES)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _selected(only):
    if not only:
        return registry.ENTRIES
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in registry.NAMES]
    if unknown or not wanted:
        raise InputError(f"unknown figure {unknown[0] if unknown else only!r}; known: {', '.join(registry.NAMES)}")
    return tuple(e for e in registry.ENTRIES if e[0] in wanted)


if __name__ == "__main__":
    sys.exit(main())
