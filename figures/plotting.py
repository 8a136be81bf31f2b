"""The figures' one plotting style: headless backend, rcParams, axis labels and line styles.

Every figure script draws through this module, so that the same quantity carries the
same mathtext label and the same model the same line everywhere, and every drawn line
has a legend entry.
"""

from __future__ import annotations

import matplotlib
import numpy as np

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from synthetic.experiments.labels import DOREMI, GROUP_DRO, LAM_STAR_TRAINED, ORACLE, ROBUST, STATIC  # noqa: E402

plt.rcParams.update({
    "figure.dpi": 120, "axes.grid": True, "grid.alpha": 0.3, "font.size": 9,
    "axes.titlesize": 10, "legend.fontsize": 8, "svg.hashsalt": "figures",
})

#: Axis labels (mathtext), one spelling per quantity.
LAMBDA_A = r"test mixture weight $\lambda_A$ of domain A"
TEST_KL = r"exact $\mathrm{KL}(D_\lambda \,\|\, \mathrm{model})$ (nats)"
JSD_HALF = r"$\mathrm{JSD}_{1/2}$ of the domains (nats)"
EPS_MAX = r"largest expert error $\varepsilon_k = \mathrm{KL}(D_k \,\|\, \pi_k)$ (nats)"
STEP = "training step"

#: Line styles of the models that recur across figures: the gates in black, baselines
#: each with its own colour, dash pattern and marker so that coinciding curves stay apart.
MODEL_STYLES = {
    ROBUST: dict(color="k", lw=2.2),
    STATIC: dict(color="k", ls="--", lw=1.2),
    ORACLE: dict(color="k", ls="none", marker="*", ms=8),
    GROUP_DRO: dict(color="C0", ls="-", marker="o", ms=4, lw=1),
    DOREMI: dict(color="C1", ls="--", marker="s", ms=4, lw=1, mfc="none"),
    LAM_STAR_TRAINED: dict(color="C2", ls="-.", marker="^", ms=4, lw=1),
}
#: Styles handed out, in order, to the models without a fixed one.
CYCLE = (
    dict(color="C3", ls=":", marker="v", ms=4, lw=1.2),
    dict(color="C4", ls="-", marker="D", ms=3.5, lw=1, mfc="none"),
    dict(color="C5", ls="--", marker="x", ms=4, lw=1),
    dict(color="C6", ls="-.", marker="P", ms=4, lw=1),
    dict(color="C7", ls=":", marker="o", ms=3, lw=1.2, mfc="none"),
    dict(color="C8", ls="-", marker="<", ms=4, lw=1),
    dict(color="C9", ls="--", marker=">", ms=4, lw=1),
)


def panels(n: int, *, width: float = 3.6, height: float = 3.0, sharey: bool = False):
    """A row of ``n`` axes."""
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), sharey=sharey, squeeze=False)
    return fig, list(axes[0])


def panel_grid(rows: int, cols: int, *, width: float = 3.6, height: float = 3.0):
    """A ``rows x cols`` grid of axes, as a list of rows."""
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    return fig, [list(r) for r in axes]


def model_styles(models) -> dict[str, dict]:
    """A line style for each model label: the fixed one of :data:`MODEL_STYLES`, else the next of :data:`CYCLE`."""
    models = list(models)
    out, free = {}, iter(CYCLE * (1 + len(models) // len(CYCLE)))
    for model in models:
        out[model] = MODEL_STYLES.get(model) or next(free)
    return out


def legend(ax, **kwargs):
    """A legend with the suite's defaults (framed, small, best location unless told)."""
    kwargs.setdefault("fontsize", 7)
    kwargs.setdefault("framealpha", 0.9)
    return ax.legend(**kwargs)


def mixture_names(mixtures, domains) -> dict[str, str]:
    """Tick label of each test mixture, keyed by the tables' ``mixture`` column (``lam_label``).

    ``docs only`` for a vertex, ``even mixture`` for equal weights on every domain, and
    otherwise one line ``w% domain`` per domain in the mixture.
    """
    from synthetic.experiments.common import lam_label

    out = {}
    for lam in mixtures:
        lam = np.asarray(lam, dtype=np.float64)
        used = [(w, d) for w, d in zip(lam, domains) if w > 0]
        if len(used) == 1:
            name = f"{used[0][1]} only"
        elif len(used) == len(domains) and np.allclose(lam, lam[0]):
            name = "even mixture"
        else:
            name = "\n".join(f"{w:.0%} {d}" for w, d in used)
        out[lam_label(lam)] = name
    return out


def error_bar_note(n_runs: int, what: str = "seeds") -> str:
    """Caption sentence that says what the error bars of a figure are (``what``: the runs they vary over)."""
    if n_runs < 2:
        return "one seed, so no error bars" if what == "seeds" else f"one run ({what}), so no error bars"
    return f"error bars: +- one standard deviation over {n_runs} {what}"
