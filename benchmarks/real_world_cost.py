"""What a real-world profile costs: one short probe run at the profile's sizes, extrapolated per stage.

The probe is one run of :func:`synthetic.experiments.real_world.real_world` with the
profile's model sizes and window length but few training steps, fit steps, windows and
expert samples. Each stage's time is divided by its units of work in the probe (expert
training steps, common steps of the four monolithic trainings, cached window x expert
evaluations, gate-fit steps, test window x monolithic-model scores, router steps) and
multiplied by the units the profile asks for: the profile's cost per run and for all its
runs (the first run also fits the gate at every length of the T sweep; fits stop early
once converged, so their part is an upper bound).

``python -m benchmarks.real_world_cost --profile full --out DIR`` writes
``real_world_cost_<profile>.csv`` and prints it with the load average.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

from theory.commandline import EXIT_OK, ArgumentParser, add_out_argument, positive, run_main, save_text

PROG = "python -m benchmarks.real_world_cost"


def build_parser() -> ArgumentParser:
    ap = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    add_out_argument(ap, "real_world_cost_<profile>.csv", folder=True, required=True)
    ap.add_argument("--profile", default="full", help="a settings name of figures.fig14_real_world")
    ap.add_argument("--steps", type=positive(int), default=10, help="training steps of the probe's models")
    ap.add_argument("--fit-steps", type=positive(int), default=20, help="gate-fit steps of the probe")
    ap.add_argument("--windows", type=positive(int), default=120, help="held-out windows per genre in the probe")
    ap.add_argument("--expert-samples", type=positive(int), default=60, help="expert samples per split in the probe")
    return ap


def main(argv=None) -> int:
    """Run the probe and write the table; exit status by :mod:`theory.commandline`."""
    return run_main(PROG, lambda: _main(argv))


def units(config: dict, *, windows: float, test_windows: float, fit_steps: float, p: int) -> dict[str, float]:
    """Units of work of one run per stage (see the module docstring)."""
    splits = len(config["cache_split"])
    return {"experts": config["steps"] * p, "monolithic": config["steps"],
            "cache": (windows + splits * config["m_expert"] * p) * p, "gate fit": fit_steps,
            "router": config["router_steps"], "test scoring": test_windows * 3}


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    from figures.fig14_real_world import configs
    from synthetic.experiments.real_world import real_world

    runs = configs(args.profile)
    probe = {**runs[0], "steps": args.steps, "fit_steps": args.fit_steps, "cache_windows": args.windows,
             "m_expert": args.expert_samples, "router_steps": min(args.steps, runs[0]["router_steps"]),
             "T_sweep": [], "check_every": min(args.fit_steps, runs[0]["check_every"])}
    p = len(probe["genres"])
    t0 = time.perf_counter()
    res = real_world(probe)
    wall = time.perf_counter() - t0
    counts = res["cache_counts"]["windows"]
    probe_windows = sum(sum(c.values()) for c in counts.values())
    probe_test = sum(c["test"] for c in counts.values())
    probe_units = units(probe, windows=probe_windows, test_windows=probe_test,
                        fit_steps=sum(f["steps"] for f in res["fits"].values()), p=p)
    test_share = probe_test / probe_windows
    rows = []
    for i, cfg in enumerate(runs):
        windows = cfg["cache_windows"] * p
        fit_steps = cfg["fit_steps"] * (1 + len(cfg["T_sweep"]))
        target = units(cfg, windows=windows, test_windows=test_share * windows, fit_steps=fit_steps, p=p)
        for stage, u in target.items():
            per_unit = res["timings"][stage] / probe_units[stage]
            rows.append({"run": i, "stage": stage, "probe_seconds": res["timings"][stage],
                         "probe_units": probe_units[stage], "seconds_per_unit": per_unit, "units": u,
                         "seconds": per_unit * u})
    table = pd.DataFrame(rows)
    per_stage = table.groupby("stage", sort=False)[["seconds"]].sum()
    per_stage["share"] = per_stage.seconds / per_stage.seconds.sum()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_text(out / f"real_world_cost_{args.profile}.csv", table.to_csv(index=False))
    load = os.getloadavg()
    print(table[table.run == 0].to_string(index=False))
    print(per_stage.to_string())
    print(f"profile {args.profile}: {len(runs)} runs, about {per_stage.seconds.sum():,.0f} CPU-s in all "
          f"({per_stage.seconds.sum() / 2 / 3600:.1f} h on 2 cores); probe {wall:.0f} s; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
