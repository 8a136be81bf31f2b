"""Figure 1: the lambda-sweep on the conflict task (robust gate against the baselines)."""

from __future__ import annotations

import pandas as pd

from figures.pipeline import Caption, Context, rows_frame
from figures.plotting import LAMBDA_A, MODEL_STYLES, TEST_KL, legend, model_styles, panels
from figures.settings import sweep_configs
from synthetic.experiments.labels import DOREMI, GROUP_DRO, LAM_STAR_TRAINED, ORACLE, ROBUST, STATIC, expert_alone
from synthetic.experiments.labels import monolithic
from synthetic.experiments.lambda_sweep import DOMAIN_NAMES, lambda_sweep

SETTINGS = {
    "quick": {"V": 5, "T": 4, "noise": 0.05, "m": 2000, "steps": 300, "expert_width": 8, "mono_width": 16,
              "large_width": 20, "points": 9, "oracle_points": 5, "seeds": (0,)},
    "full": {"V": 8, "T": 5, "noise": 0.05, "m": 20000, "steps": 3000, "expert_width": 8, "mono_width": 16,
             "large_width": 20, "points": 21, "oracle_points": 11, "seeds": tuple(range(5))},
}


def configs(profile: str, contamination: float) -> list[dict]:
    return sweep_configs(SETTINGS, profile, fixed={"contamination": contamination})


def worst_case(df: pd.DataFrame) -> pd.Series:
    """Per model: the worst test KL over the mixtures, averaged over seeds (Oracle: over its points)."""
    return df.groupby(["model", "seed"]).test_kl.max().groupby("model").mean().sort_values()


def baseline_labels(cfg: dict) -> list[str]:
    """The monolithic baselines of the sweep: one model each, trained on the aggregate."""
    return [monolithic(cfg["mono_width"]), monolithic(cfg["large_width"]), GROUP_DRO, DOREMI, LAM_STAR_TRAINED]


def plot_sweep(ax, ax_gap, df: pd.DataFrame, title: str) -> None:
    """Left: exact test KL of every model over the test mixtures. Right: the same minus the
    robust gate's KL, where baselines that lie close together on the left separate."""
    shown = df[~df.model.isin([expert_alone(name) for name in DOMAIN_NAMES])]
    mean = shown.groupby(["model", "lam0"]).test_kl.mean().reset_index()
    styles = model_styles(sorted(mean.model.unique(), key=_plot_order))
    robust = mean[mean.model == ROBUST].set_index("lam0").test_kl
    for model, style in styles.items():
        d = mean[mean.model == model]
        ax.plot(d.lam0, d.test_kl, label=model, **style)
        if model not in (ROBUST, ORACLE):
            ax_gap.plot(d.lam0, d.test_kl.to_numpy() - robust.loc[d.lam0].to_numpy(), label=model, **style)
    ax_gap.axhline(0.0, **MODEL_STYLES[ROBUST], label=f"{ROBUST} (zero line)")
    ax.set_xlabel(LAMBDA_A)
    ax.set_ylabel(TEST_KL)
    ax.set_title(title)
    ax_gap.set_xlabel(LAMBDA_A)
    ax_gap.set_ylabel(r"$\mathrm{KL}(\mathrm{model}) - \mathrm{KL}(\mathrm{robust\ gate})$ (nats)")
    ax_gap.set_title(f"{title}: excess over the robust gate")


def _plot_order(model: str) -> tuple[int, str]:
    fixed = (ROBUST, STATIC, ORACLE)
    return (fixed.index(model), "") if model in fixed else (len(fixed), model)


#: Two baselines whose mean test KL differs by less than this (nats) at every test mixture
#: coincide at the scale of the left panel (under 1% of its range); the caption says so.
COINCIDE_TOL = 5e-3


def sweep_caption(df: pd.DataFrame, task: str, cfg: dict) -> tuple[str, bool]:
    """Caption of one sweep and whether the robust gate has the lowest worst-case KL.

    The same-size monolithic model is the row labelled ``monolithic(cfg['mono_width'])``
    (the experts' summed width); the larger one is ``monolithic(cfg['large_width'])``.
    """
    worst = worst_case(df)
    baselines = worst.drop([ROBUST, ORACLE], errors="ignore")
    best = baselines.idxmin()
    held = bool(worst[ROBUST] <= baselines.min())
    same, large = monolithic(cfg["mono_width"]), monolithic(cfg["large_width"])
    text = (f"{task}: worst-case exact KL of the robust gate {worst[ROBUST]:.3f} nats vs the best other "
            f"non-Oracle model ({best}) {baselines.min():.3f} and the same-size {same} {worst[same]:.3f} "
            f"({large}: {worst[large]:.3f}); the Oracle (one model per test mixture) reaches "
            f"{worst.get(ORACLE, float('nan')):.3f}; {coincidences(df, cfg)}")
    return text, held


def coincidences(df: pd.DataFrame, cfg: dict) -> str:
    """Which monolithic baselines coincide (within :data:`COINCIDE_TOL` at every mixture), measured."""
    names = baseline_labels(cfg)
    mean = df[df.model.isin(names)].groupby(["lam0", "model"]).test_kl.mean().unstack("model")[names]
    pairs = [(a, b, float((mean[a] - mean[b]).abs().max())) for i, a in enumerate(names) for b in names[i + 1:]]
    close = [f"{a} and {b} (max difference {d:.1e})" for a, b, d in pairs if d < COINCIDE_TOL]
    spread = float((mean.max(axis=1) - mean.min(axis=1)).max())
    return (f"the five monolithic baselines differ by up to {spread:.3f} nats at a test mixture"
            + (f"; coinciding: {', '.join(close)}" if close else "; no two coincide"))


def size_note(df: pd.DataFrame, cfg: dict) -> str:
    """What 'monolithic wW (even)' means, with the parameter counts of the table."""
    sizes = df.groupby("model").parameters.first()
    same, large = monolithic(cfg["mono_width"]), monolithic(cfg["large_width"])
    return (f"'{same}' is a width-{cfg['mono_width']} transformer (the two width-{cfg['expert_width']} experts' "
            f"summed width; {sizes[same]} parameters against the gated model's {sizes[ROBUST]}) trained at even "
            f"domain weights, '{large}' the same at width {cfg['large_width']} ({sizes[large]} parameters); the "
            f"right panel shows each model's excess over the robust gate, where close curves separate")


def run(ctx: Context) -> Caption:
    cfgs = configs(ctx.profile, 0.0)
    results = ctx.sweep("lambda_sweep", lambda_sweep, cfgs)
    df = rows_frame(results)
    ctx.write_table("lambda_sweep", df, configs=cfgs, results=results)
    summary = pd.DataFrame([{"seed": c["seed"], **r["summary"]} for c, r in zip(cfgs, results)])
    ctx.write_table("lambda_sweep_solutions", summary, configs=cfgs, results=results)
    fig, (ax, ax_gap) = panels(2, width=5.2, height=4.2)
    plot_sweep(ax, ax_gap, df, "conflict task")
    legend(ax, ncol=2, loc="upper center")
    legend(ax_gap, fontsize=6)
    fig.tight_layout()
    ctx.save_figure("lambda_sweep", fig, configs=cfgs, results=results)
    text, held = sweep_caption(df, "Conflict task", cfgs[0])
    summary_note = f"; lam* = ({', '.join(f'{x:.3f}' for x in summary.lam_star.iloc[0])})"
    return Caption(f"{text}{summary_note}. {size_note(df, cfgs[0])}", held, "robust gate has the lowest worst-case KL")
