"""Figure 7: generalisation gap of learned gates against samples and gate complexity, Thm 9 bound."""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from figures.pipeline import Caption, Context, rows_frame
from figures.plotting import panels
from figures.settings import sweep_configs
from synthetic.experiments.generalisation import generalisation_point

SETTINGS = {
    "quick": {"regime": "random", "p": 2, "n": 64, "quality": 0.3, "instance_seed": 0, "draws": 100, "delta": 0.05,
              "m": (16, 64, 256, 1024, 4096), "cells": (1, 4, 16, 64), "seeds": (0, 1, 2)},
    "full": {"regime": "random", "p": 3, "n": 256, "quality": 0.3, "instance_seed": 0, "draws": 200, "delta": 0.05,
             "m": tuple(int(x) for x in np.geomspace(16, 16384, 6)), "cells": (1, 2, 4, 8, 16, 32, 64, 128, 256),
             "seeds": tuple(range(10))},
}


def configs(profile: str) -> list[dict]:
    return sweep_configs(SETTINGS, profile, expand=("m", "cells"))


def run(ctx: Context) -> Caption:
    cfgs = configs(ctx.profile)
    results = ctx.sweep("generalisation", generalisation_point, cfgs)
    df = rows_frame(results)
    ctx.write_table("generalisation", df, configs=cfgs, results=results)
    mean = df.groupby(["m", "cells"])[["gap", "bound", "empirical_ce", "population_ce"]].mean().reset_index()

    fig, (ax_m, ax_c, ax_ce) = panels(3)
    for i, (c, d) in enumerate(mean.groupby("cells")):
        ax_m.semilogx(d.m, d.gap, "o-", color=f"C{i}", ms=3, label=f"gap, {c} cells")
        ax_m.semilogx(d.m, d.bound, "--", color=f"C{i}", lw=0.8)
    ax_m.plot([], [], "k--", lw=0.8, label="Thm 9 bound (dashed, same colour)")
    ax_m.set_yscale("symlog", linthresh=1e-2)
    ax_m.set_xlabel("samples per domain m")
    ax_m.set_ylabel("population - empirical CE (nats)")
    ax_m.set_title("gap (solid) and Thm 9 bound (dashed)")
    ax_m.legend(fontsize=6)
    m_mid = sorted(mean.m.unique())[len(mean.m.unique()) // 2]
    d = mean[mean.m == m_mid]
    ax_c.semilogx(d.cells, d.gap, "o-", label="measured gap")
    ax_c.semilogx(d.cells, d.bound, "k--", label="Thm 9 bound")
    ax_c.set_yscale("symlog", linthresh=1e-2)
    ax_c.set_xlabel("gate cells c (complexity)")
    ax_c.set_title(f"m = {m_mid}")
    ax_c.legend(fontsize=7)
    for i, (c, d) in enumerate(mean.groupby("cells")):
        ax_ce.semilogx(d.m, d.empirical_ce, ":", color=f"C{i}")
        ax_ce.semilogx(d.m, d.population_ce, "-", color=f"C{i}", label=f"{c} cells")
    ax_ce.plot([], [], "k:", label="empirical (dotted, same colour)")
    ax_ce.set_xlabel("samples per domain m")
    ax_ce.set_ylabel("cross-entropy (nats)")
    ax_ce.set_title("population (solid), empirical (dotted)")
    ax_ce.legend(fontsize=6)
    ctx.save_figure("generalisation", fig, configs=cfgs, results=results)

    delta = cfgs[0]["delta"]
    violated = (df.gap > df.bound).mean()
    ratio = (df.bound / df.gap.where(df.gap > 0)).median()
    rho_m = spearmanr(mean.m, mean.gap).statistic
    rho_c = spearmanr(mean.cells, mean.gap).statistic
    held = bool(violated <= delta)
    text = (f"Thm 9 bound on population minus empirical CE held at {(1 - violated):.1%} of "
            f"{len(df)} (m, cells, seed, domain) draws (needs >= {1 - delta:.0%}); median bound/gap "
            f"{ratio:.0f}x; Spearman correlation of the mean gap with m {rho_m:+.2f}, with the cells {rho_c:+.2f}")
    return Caption(text, held, "Thm 9 generalisation bound")
