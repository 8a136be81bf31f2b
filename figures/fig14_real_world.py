"""Figure 14: the real-world experiment (four real text genres, parameter-matched neural models).

Tables 1 and 2 of the paper's real-world study, measured here: Table 1 the NLL per byte
of every model on each genre and on the centre mixture (mean +- std over model seeds,
and over data subsamples); Table 2 every model on the 12 test mixtures with the worst
case last and the winner of each column in bold. The figure: worst-case NLL against the
window length T, and the gate's margin over the parameter-matched monolithic model on
each test mixture.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from figures.pipeline import Caption, Context, rows_frame
from figures.plotting import error_bar_note, legend, mixture_names, model_styles, panels
from synthetic.corpora import REAL_GENRES
from synthetic.experiments import real_world as rw

# Window length T is the training window; T_sweep the lengths of the T figure (prefixes of the
# test windows; the gate is refitted at each length). Widths: experts ~1M parameters in `full`.
SETTINGS = {
    "quick": {"T": 32, "T_sweep": [8, 16], "expert_width": 16, "gate_embed": 8, "gate_hidden": 8,
              "train_windows": 2000, "train_fraction": 0.7, "steps": 120, "batch_size": 16, "lr": 1e-2,
              "m_val": 300, "m_test": 300, "m_expert": 300, "fit_steps": 300, "fit_batch": 128, "fit_lr": 0.01,
              "lam_lr": 0.1, "router_samples": 300, "router_steps": 100, "seeds": (0, 1, 2), "subsamples": (0, 1, 2)},
    "full": {"T": 256, "T_sweep": [16, 32, 64, 128], "expert_width": 256, "gate_embed": 32, "gate_hidden": 64,
             "train_windows": 40000, "train_fraction": 0.7, "steps": 3000, "batch_size": 32, "lr": 3e-3,
             "m_val": 2000, "m_test": 2000, "m_expert": 2000, "fit_steps": 2000, "fit_batch": 256, "fit_lr": 0.005,
             "lam_lr": 0.1, "router_samples": 2000, "router_steps": 1000, "seeds": (0, 1, 2),
             "subsamples": (0, 1, 2)},
}


def configs(profile: str) -> list[dict]:
    """One run per model seed (on data subsample 0) and per further data subsample (model seed 0)."""
    s = dict(SETTINGS[profile])
    seeds, subsamples = s.pop("seeds"), s.pop("subsamples")
    runs = [(seed, subsamples[0]) for seed in seeds] + [(seeds[0], sub) for sub in subsamples[1:]]
    return [{**s, "genres": list(REAL_GENRES), "seed": seed, "subsample": sub,
             "T_sweep": s["T_sweep"] if (seed, sub) == runs[0] else []} for seed, sub in runs]


def _mean_std(values) -> str:
    v = np.asarray(values, dtype=np.float64)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def table1(df: pd.DataFrame, seeds_runs: pd.DataFrame, subsample_runs: pd.DataFrame, genres) -> pd.DataFrame:
    """NLL per byte on each genre and on the centre mixture, over seeds and over data subsamples."""
    columns = {g: rw.lam_label(np.eye(len(genres))[k]) for k, g in enumerate(genres)}
    columns["centre"] = rw.lam_label(np.full(len(genres), 1.0 / len(genres)))
    rows = []
    for protocol, part in (("seeds", seeds_runs), ("data subsamples", subsample_runs)):
        for model in dict.fromkeys(df.model):
            d = part[part.model == model]
            rows.append({"protocol": protocol, "model": model,
                         **{name: _mean_std(d[d.mixture == mix].nll_per_byte) for name, mix in columns.items()}})
    return pd.DataFrame(rows)


def table2(df: pd.DataFrame) -> pd.DataFrame:
    """Mean NLL per byte of every model on every test mixture (columns), worst case last."""
    t = df.groupby(["model", "mixture"], sort=False).nll_per_byte.mean().unstack("mixture")
    t = t[list(dict.fromkeys(df.mixture))]
    t["worst case"] = df.groupby(["model", "seed", "subsample"]).nll_per_byte.max().groupby("model").mean()
    return t


def markdown_table2(t: pd.DataFrame) -> str:
    """Models as columns, mixtures as rows (worst case last), the lowest NLL of each row in bold."""
    tt = t.T
    lines = ["| mixture | " + " | ".join(tt.columns) + " |", "|---" * (len(tt.columns) + 1) + "|"]
    for mix, row in tt.iterrows():
        best = row.min()
        cells = [f"**{v:.3f}**" if v == best else f"{v:.3f}" for v in row]
        lines.append(f"| {mix} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def draw(df: pd.DataFrame, sweep: pd.DataFrame, t2: pd.DataFrame, genres, cfg: dict):
    """Left: worst-case NLL against the window length. Right: the gate's margin over the
    parameter-matched monolithic model on each test mixture, mean and std over the runs.

    Returns the figure and the mean margin per mixture (``lam_label`` index).
    """
    # Worst case over the test mixtures at each window length: cross-entropy is linear in the
    # mixture, so it is the largest per-genre NLL (the vertices are among the test mixtures).
    per_T = sweep.groupby(["model", "T", "domain"]).nll_per_byte.mean().groupby(["model", "T"]).max().unstack("T")
    shown = [rw.GATE, rw.UNIFORM, rw.BEST_STATIC, rw.POSTERIOR, rw.MONO_EVEN, rw.ROUTED]
    styles = model_styles(shown)
    fig, (ax, bx) = panels(2, width=7.0, height=4.4)
    fig.set_size_inches(14.0, 4.8)
    for model in shown:
        ax.plot(per_T.columns, per_T.loc[model], label=model, **{"marker": "o", **styles[model]})
    ax.set_xscale("log", base=2)
    ax.set_xlabel(r"window length $T$ (bytes)")
    ax.set_ylabel("worst-case test NLL (nats per byte)")
    ax.set_title("worst case over the test mixtures")
    lo, hi = np.nanmin(per_T.loc[shown].to_numpy()), np.nanmax(per_T.loc[shown].to_numpy())
    ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.45 * (hi - lo))  # room for the legend above the curves
    legend(ax, ncol=3, loc="upper center")
    margin = (t2.loc[rw.MONO_EVEN] - t2.loc[rw.GATE]).drop("worst case")
    per_run = df.pivot_table(index=["seed", "subsample", "mixture"], columns="model", values="nll_per_byte")
    runs = (per_run[rw.MONO_EVEN] - per_run[rw.GATE]).unstack("mixture")[margin.index]
    spread = runs.std(ddof=1) if len(runs) > 1 else None
    win = margin.to_numpy() > 0
    colours = np.where(win, "tab:green", "tab:red")
    bx.bar(np.arange(len(margin)), margin.to_numpy(), yerr=spread, capsize=2, color=colours,
           error_kw={"ecolor": "0.3"})
    zero = bx.axhline(0, color="black", lw=0.8, label="no difference")
    names = mixture_names(rw.test_mixtures(len(genres)), genres)
    bx.set_xticks(np.arange(len(margin)))
    bx.set_xticklabels([names[m] for m in margin.index], fontsize=6, rotation=40, ha="right",
                       rotation_mode="anchor")
    bx.set_xlabel("test mixture of the genres")
    bx.set_ylabel("NLL(monolithic, even) - NLL(robust gate) (nats per byte)")
    bx.set_title(f"$T = {cfg['T']}$: margin of the robust gate (> 0: the gate wins)")
    handles = [Patch(color="tab:green", label="robust gate better"), Patch(color="tab:red", label="monolithic better"),
               zero]
    legend(bx, handles=handles)
    fig.tight_layout()
    return fig, margin


def run(ctx: Context) -> Caption:
    cfgs = configs(ctx.profile)
    results = ctx.sweep("real_world", rw.real_world, cfgs)
    df = rows_frame(results)
    genres = cfgs[0]["genres"]
    ctx.write_table("real_world_runs", df, configs=cfgs, results=results)
    sub0 = cfgs[0]["subsample"]
    t1 = table1(df, df[df.subsample == sub0], df[df.seed == cfgs[0]["seed"]], genres)
    ctx.write_table("real_world_table1", t1, configs=cfgs, results=results)
    t2 = table2(df)
    ctx.write_table("real_world_table2", t2.reset_index(), configs=cfgs, results=results)
    md = ctx.results / "tables" / "real_world_table2.md"
    md.write_text(markdown_table2(t2))
    ctx._record(md, cfgs, results, None)
    params = pd.DataFrame([{"model": m, **c} for m, c in results[0]["parameters"].items()])
    ctx.write_table("real_world_parameters", params, configs=cfgs, results=results)
    sweep = pd.DataFrame([r for res in results for r in res["sweep"]])
    ctx.write_table("real_world_window", sweep, configs=cfgs, results=results)

    fig, margin = draw(df, sweep, t2, genres, cfgs[0])
    ctx.save_figure("real_world", fig, configs=cfgs, results=results)

    wins = int((margin > 0).sum())
    worst = t2["worst case"]
    held = bool(wins == len(margin))
    z = [r["z"] for r in results]
    text = (f"Real world ({', '.join(genres)}; byte-level transformers, {len(cfgs)} runs; profile {ctx.profile}): "
            f"the robust gate ({params.set_index('model').loc[rw.GATE, 'trainable']} trainable parameters over "
            f"{params.set_index('model').loc[rw.GATE, 'frozen']} frozen) beats the parameter-matched monolithic model "
            f"(even weights, {params.set_index('model').loc[rw.MONO_EVEN, 'trainable']} parameters, same training "
            f"tokens) on {wins}/{len(margin)} test mixtures; worst case {worst[rw.GATE]:.3f} vs "
            f"{worst[rw.MONO_EVEN]:.3f} nats/byte (DoReMi weights {worst[rw.MONO_DOREMI]:.3f}, lam* weights "
            f"{worst[rw.MONO_LAMSTAR]:.3f}; uniform gate {worst[rw.UNIFORM]:.3f}, best static gate {worst[rw.BEST_STATIC]:.3f}, routed model {worst[rw.ROUTED]:.3f}); "
            f"lowest worst case: {worst.idxmin()} ({worst.min():.3f}). Gate mass Z {min(z):.3f}-{max(z):.3f} "
            f"(unbiased, expert samples). NLL per byte on test windows of T = {cfgs[0]['T']} bytes, mean over runs")
    runs = df.groupby(["seed", "subsample"]).ngroups
    text += (f"; left panel: window lengths of one run (model seed {cfgs[0]['seed']}, data subsample "
             f"{cfgs[0]['subsample']}), so no error bars; right panel: {error_bar_note(runs, 'runs')} (model seeds and "
             f"data subsamples)")
    if not held:
        names = mixture_names(rw.test_mixtures(len(genres)), genres)
        losses = "; ".join(names[m].replace("\n", ", ") for m in margin.index[margin <= 0])
        text += f"; the gate loses on {losses}"
    return Caption(text, held, "the gate beats the parameter-matched monolithic model on every test mixture")
