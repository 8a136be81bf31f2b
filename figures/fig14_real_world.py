"""Figure 14: the real-world experiment (four real text genres, parameter-matched neural models).

Tables 1 and 2 of the paper's real-world study, measured here: Table 1 the NLL per byte
of every model on each genre and on the centre mixture (mean +- std over model seeds,
and over data subsamples); Table 2 every model on the 12 test mixtures with the worst
case last and the winner of each column in bold. The figure: worst-case NLL against the
window length T, and the gate's margin over the parameter-matched monolithic model on
each test mixture.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from figures.pipeline import Caption, Context, rows_frame
from figures.plotting import error_bar_note, legend, mixture_names, model_styles, panels
from synthetic.corpora import REAL_GENRES
from synthetic.experiments import real_world as rw

# Window length T is the training window; T_sweep the shorter lengths of the T figure (prefixes of
# the cached windows; the gate is refitted at each length). Gate fit: started at the best constant
# gate of the training windows and its least-favourable lam (exact), cosine-annealed steps,
# polynomial-decay averages of the gate's parameters and of lam, the multiplier of Z = 1 started at 0
# (from mu0 = 1 it took ~600 steps to stop pushing Z below 1), and the check returned that is best on
# the validation windows (VAL.npz, whose expert samples give the held-out Z). Small steps from that
# start (lam 4 per byte, i.e. 0.125 per window at T = 32, gate 0.003): with lam 32 per byte and gate
# 0.03, or with weight decay pulling the start's log-weights towards the uniform gate, the validation
# objective rose within 50 steps at every setting tried and the start was returned (quick profile,
# runs 0 and 4: test worst excess 0.0145 / 0.0162 against 0.0136 / 0.0131 with the small steps).
# Both residuals are held to 0.001 nats per byte (real_world.tolerances: the gap to T x 0.001 nats
# per window, |log Z| to T x 0.001).
_FIT = {"fit_lr": 0.003, "lr_schedule": "cosine", "gate_iterate": "poly", "lam_lr": 4.0, "mu_lr": 1 / 64, "mu0": 0.0,
        "tol_per_byte": 0.001, "fit_weight_decay": 0.0, "cache_split": (0.4, 0.2, 0.4), "fit_dtype": "float32"}
# Larger models train under bfloat16 autocast where the hardware computes in it natively (3.5x faster
# per step with AMX tiles; 7-11x slower where it is emulated, as on AVX2-only CPUs: float32 there) and
# are evaluated and sampled in float32 (5x faster than float64; per-token log-probabilities within 1e-6).
_FAST = {"precision": "auto", "eval_dtype": "float32"}
SETTINGS = {
    # Tiny models for CI and `make reproduce`: 176 s on 2 cores (5 runs on 2 workers, 55-72 s each).
    "quick": {**_FIT, "T": 32, "T_sweep": [8, 16], "expert_width": 16, "gate_width": 6, "train_windows": 2000,
              "train_fraction": 0.7, "steps": 120, "batch_size": 16, "lr": 1e-2, "cache_windows": 1500,
              "excerpt_windows": 6, "m_expert": 1000, "fit_steps": 200, "fit_batch": 64,
              "check_every": 50, "router_steps": 100, "seeds": (0, 1, 2), "subsamples": (0, 1, 2)},
    # Experts of 987,392 parameters (one block, width 256), a 53,140-parameter transformer gate (5.4%),
    # monolithic width 544 (3,977,984 parameters, -0.6% of experts + gate; a multiple of 16, which runs
    # 16% faster than the closest width, 546); CPU. Sized to this CPU (AMD EPYC, AVX2 only, so float32:
    # bfloat16 is emulated there and 7-11x slower). Measured alone, one thread, T = 256: a monolithic
    # step of 64 windows 8.4 s at width 544 (at the float32 matrix-product floor: 45 of 40-58 GFLOP/s).
    # The three parameter-matched monolithic trainings (equal weights, DoReMi, lam*) are the floor of
    # the run, so the budget is 40 steps of 12 windows per expert (48 per monolithic step; an expert
    # sees 123 kB), 256 expert samples per split and fit batches of 16 per set. Run end to end (5 runs
    # side by side, 2 cores): 4,163 s of wall time, the monolithic trainings 43% and the cache 28% of it.
    "full": {**_FIT, **_FAST, "T": 256, "T_sweep": [16, 64], "expert_width": 256, "gate_width": 48,
             "train_windows": 40000, "train_fraction": 0.7, "steps": 40, "batch_size": 12, "lr": 3e-3,
             "cache_windows": 800, "excerpt_windows": 2, "m_expert": 256, "fit_steps": 200,
             "fit_batch": 16, "check_every": 50, "router_steps": 200, "seeds": (0, 1, 2),
             "subsamples": (0, 1, 2)},
}
#: Settings beyond the pipeline's profiles, run by ``python -m figures.fig14_real_world --settings NAME``.
EXTRA_SETTINGS = {
    # The paper's sizes, for a GPU (CUDA is used when present; same code): experts of 6,499,584
    # parameters (width 704), a 294,172-parameter gate (4.5%), monolithic width 1448 (26,295,936).
    "paper": {**_FIT, **_FAST, "T": 256, "T_sweep": [16, 32, 64, 128], "expert_width": 704, "gate_width": 136,
              "train_windows": 200000, "train_fraction": 0.7, "steps": 5000, "batch_size": 64, "lr": 1e-3,
              "cache_windows": 4000, "excerpt_windows": 2, "m_expert": 4000, "fit_lr": 0.001, "fit_steps": 5000,
              "fit_batch": 512, "check_every": 250, "router_steps": 2000, "seeds": (0, 1, 2),
              "subsamples": (0, 1, 2)},
}


def configs(profile: str) -> list[dict]:
    """One run per model seed (on data subsample 0) and per further data subsample (model seed 0)."""
    s = dict({**SETTINGS, **EXTRA_SETTINGS}[profile], profile=profile)
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


def worst_by_window(sweep: pd.DataFrame) -> pd.DataFrame:
    """Worst-case NLL per byte of each model (rows) at each window length (columns).

    Cross-entropy is linear in the mixture, so the worst case over the test mixtures is the
    largest per-genre NLL (the vertices are among the test mixtures).
    """
    return sweep.groupby(["model", "T", "domain"]).nll_per_byte.mean().groupby(["model", "T"]).max().unstack("T")


def draw(df: pd.DataFrame, sweep: pd.DataFrame, t2: pd.DataFrame, genres, cfg: dict):
    """Left: worst-case NLL against the window length. Right: the gate's margin over the
    parameter-matched monolithic model on each test mixture, mean and std over the runs.

    Returns the figure and the mean margin per mixture (``lam_label`` index).
    """
    per_T = worst_by_window(sweep)
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


def fit_summary(results) -> str:
    """The gate fits' status and residuals over all runs and window lengths (converged or not: said).

    Residuals per byte, as their tolerances (:func:`synthetic.experiments.real_world.tolerances`):
    the adversary's gap / T and ``|log Z| / T`` of Z on the validation expert samples (plus two
    standard errors, as the status counts it).
    """
    fits = [(int(T), f) for r in results for T, f in r["fits"].items()]
    ok = sum(f["status"] == "converged" for _, f in fits)
    gap = max(f["gap"] / T for T, f in fits)
    held = [(abs(math.log(f["z_holdout"])) + 2 * (f["z_holdout_se"] or 0.0)) / T for T, f in fits
            if f.get("z_holdout") is not None and f["z_holdout"] > 0]
    held_text = f", |log Z| + 2 se {max(held):.2g} nats/byte on the validation expert samples" if held else ""
    steps = [f["steps"] for _, f in fits]
    selected = [f.get("selected_step") for _, f in fits]
    at_start = sum(s == 0 for s in selected)
    word = "converged" if ok == len(fits) else f"not_converged in {len(fits) - ok} of them"
    per_byte = fits[0][1]["tol_gap"] / fits[0][0]
    return (f"gate fits {word} ({ok}/{len(fits)} converged; largest residuals: adversary's gap {gap:.2g} "
            f"nats/byte{held_text}; tolerance {per_byte:.2g} nats/byte for both; {min(steps)}-{max(steps)} steps; "
            f"the check returned, best on the validation windows, was the starting best constant gate in "
            f"{at_start} of {len(fits)} fits)")


def claim_text(t2: pd.DataFrame, gate: str, mono: str, names: dict | None = None) -> tuple[str, bool]:
    """Whether ``gate`` beats ``mono`` on every test mixture and on the worst case, by how much, and where not
    (mixtures named by ``names``, label -> readable name, where given)."""
    margin = (t2.loc[mono] - t2.loc[gate]).drop("worst case")
    wins = int((margin > 0).sum())
    worst = float(t2.loc[mono, "worst case"] - t2.loc[gate, "worst case"])
    text = (f"the gate beats {mono} on {wins}/{len(margin)} test mixtures (margin {margin.min():+.3f} to "
            f"{margin.max():+.3f} nats/byte) and {'wins' if worst > 0 else 'loses'} the worst case by "
            f"{abs(worst):.3f} ({t2.loc[gate, 'worst case']:.3f} vs {t2.loc[mono, 'worst case']:.3f})")
    if wins < len(margin):
        names = names or {}
        text += f"; it loses on {'; '.join(names.get(m, m).replace(chr(10), ', ') for m in margin.index[margin <= 0])}"
    return text, bool(wins == len(margin) and worst > 0)


def run(ctx: Context, settings: str | None = None) -> Caption:
    """Run the experiment at ``settings`` (default: the context's profile; ``paper`` for a GPU)."""
    settings = settings or ctx.profile
    suffix = "" if settings == "quick" else f"_{settings}"
    cfgs = configs(settings)
    results = ctx.sweep("real_world", rw.real_world, cfgs)
    df = rows_frame(results)
    genres = cfgs[0]["genres"]
    ctx.write_table(f"real_world_runs{suffix}", df, configs=cfgs, results=results)
    sub0 = cfgs[0]["subsample"]
    t1 = table1(df, df[df.subsample == sub0], df[df.seed == cfgs[0]["seed"]], genres)
    ctx.write_table(f"real_world_table1{suffix}", t1, configs=cfgs, results=results)
    t2 = table2(df)
    ctx.write_table(f"real_world_table2{suffix}", t2.reset_index(), configs=cfgs, results=results)
    ctx.write_text(f"tables/real_world_table2{suffix}.md", markdown_table2(t2), configs=cfgs, results=results)
    params = pd.DataFrame([{"model": m, **c} for m, c in results[0]["parameters"].items()])
    ctx.write_table(f"real_world_parameters{suffix}", params, configs=cfgs, results=results)
    sweep = pd.DataFrame([r for res in results for r in res["sweep"]])
    ctx.write_table(f"real_world_window{suffix}", sweep, configs=cfgs, results=results)
    fits = pd.DataFrame([{"seed": c["seed"], "subsample": c["subsample"], "T": int(T), **f,
                          "lam": ";".join(f"{v:.4f}" for v in f["lam"])}
                         for c, r in zip(cfgs, results) for T, f in r["fits"].items()])
    ctx.write_table(f"real_world_fits{suffix}", fits, configs=cfgs, results=results)

    fig, margin = draw(df, sweep, t2, genres, cfgs[0])
    per_T = worst_by_window(sweep)
    ctx.save_figure(f"real_world{suffix}", fig, configs=cfgs, results=results)

    worst = t2["worst case"]
    p_of = params.set_index("model")
    names = mixture_names(rw.test_mixtures(len(genres)), genres)
    even, held = claim_text(t2, rw.GATE, rw.MONO_EVEN, names)
    others = "; ".join(claim_text(t2, rw.GATE, m, names)[0].replace("the gate beats ", "vs ")
                       for m in (rw.MONO_DOREMI, rw.MONO_LAMSTAR))
    z = [r["z_test"] for r in results]
    gain_T = (per_T.loc[rw.UNIFORM] - per_T.loc[rw.GATE])
    text = (f"Real world ({', '.join(genres)}; byte-level transformers, {len(cfgs)} runs: 3 model seeds and 3 "
            f"data subsamples; settings {settings}): the robust gate "
            f"({p_of.loc[rw.GATE, 'trainable']} trainable parameters over {p_of.loc[rw.GATE, 'frozen']} frozen) "
            f"against the parameter-matched monolithic model ({p_of.loc[rw.MONO_EVEN, 'trainable']} parameters, "
            f"same training tokens): {even}. Paper's claim (gate better on every test mixture and on the worst "
            f"case): {'holds' if held else 'does not hold'} here. Monolithic at other weights: {others}. "
            f"Worst cases: uniform gate {worst[rw.UNIFORM]:.3f}, best static gate {worst[rw.BEST_STATIC]:.3f}, "
            f"posterior gate (renormalised) {worst[rw.POSTERIOR]:.3f}, routed model {worst[rw.ROUTED]:.3f}; lowest: "
            f"{worst.idxmin()} ({worst.min():.3f}). Gate minus uniform gate in worst case by window length: "
            + ", ".join(f"T={T}: {-v:+.3f}" for T, v in gain_T.items())
            + f". {fit_summary(results)}; gate mass on held-out expert samples (test split) Z "
            f"{min(z):.3f}-{max(z):.3f}. NLL per byte on held-out windows of T = {cfgs[0]['T']} bytes, mean over runs")
    runs = df.groupby(["seed", "subsample"]).ngroups
    text += (f"; left panel: window lengths of one run (model seed {cfgs[0]['seed']}, data subsample "
             f"{cfgs[0]['subsample']}), so no error bars; right panel: {error_bar_note(runs, 'runs')} (model seeds and "
             f"data subsamples)")
    return Caption(text, held, "the gate beats the parameter-matched monolithic model on every test mixture "
                               "and on the worst case")


def main(argv=None) -> int:
    """``python -m figures.fig14_real_world --settings paper``: this figure alone at any of its settings."""
    import argparse

    from pathlib import Path

    from figures.cache import ResultCache
    from figures.provenance import code_fingerprint
    from figures.sweep import SweepRunner

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--settings", choices=[*SETTINGS, *EXTRA_SETTINGS], default="paper",
                    help="quick, full (CPU) or paper (the paper's sizes, for a GPU)")
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args(argv)
    profile = "quick" if args.settings == "quick" else "full"
    ctx = Context(profile=profile, results=args.results, runner=SweepRunner(jobs=args.jobs),
                  cache=ResultCache(args.results / "cache", salt=code_fingerprint()))
    cap = run(ctx, args.settings)
    print(cap.text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
