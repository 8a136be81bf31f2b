"""The paper-scale figure end to end on a tiny setting: outputs, tables and a computed caption."""

import json

import pandas as pd

from figures import fig13_paper_scale as fig
from figures.cache import ResultCache
from figures.pipeline import Context, run_figures
from figures.registry import ENTRIES, load

TINY = {"V": 5, "Ts": (4,), "rates": (0.0, 0.5), "m": 400, "expert_steps": 10, "steps": 5, "mono_width": 8,
        "large_width": 12, "oracle_points": 3, "points": 5, "mc": 300, "gate_m": 200, "gate_steps": 10,
        "gate_batch": 32, "gate_lr": 0.02, "seeds": (0,), "enumerate_up_to": 50, "z_mc": 300, **fig._FIT,
        "small": {"V": 3, "T": 3, "m": 200, "expert_steps": 5, "gate_m": 200, "gate_steps": 10, "gate_batch": 32,
                  "gate_lr": 0.02}}


def test_paper_scale_figure_writes_outputs_and_a_caption(tmp_path, monkeypatch):
    monkeypatch.setitem(fig.SETTINGS, "quick", TINY)
    ctx = Context("quick", tmp_path, ResultCache(tmp_path / "cache"))
    entry = [f for f in load([e for e in ENTRIES if e[0] == "paper_scale"])]
    outcome = run_figures(entry, ctx, log=lambda *_: None)
    assert outcome["paper_scale"]["ok"], outcome
    assert (tmp_path / "figures" / "paper_scale.png").exists()
    df = pd.read_csv(tmp_path / "tables" / "paper_scale.csv")
    assert {"learned gate", "best static gate", "Oracle w8", "Oracle w12", "Group DRO w8", "DoReMi w8",
            "bigram (even)"} <= set(df.model)
    assert (df[df.model == "bigram (even)"].se == 0).all() and (df[df.model == "learned gate"].se > 0).all()
    params = pd.read_csv(tmp_path / "tables" / "paper_scale_parameters.csv")
    gate = params[params.model == "learned gate"].iloc[0]
    expert = params[params.model == "expert A alone"].iloc[0]
    assert gate.frozen == 2 * expert.trainable and gate.parameters == gate.trainable + gate.frozen
    small = pd.read_csv(tmp_path / "tables" / "paper_scale_small_v.csv")
    assert (small.gap > -1e-9).all()  # the exact robust gate is optimal over every gate
    caption = json.loads((tmp_path / "figures" / "captions.json").read_text())["paper_scale"]["caption"]
    assert "holds:" in caption and "exact tabular robust value" in caption and "margin" in caption
    assert "max SE" in caption and "Rao-Blackwellised" in caption
    items = pd.read_csv(tmp_path / "timings" / "paper_scale_items.csv")
    assert set(items["item"]) == {"domain", "small", "monolithic"} and (items.cpu_seconds > 0).all()
    # The even-mixture model is the Oracle at 1/2: one training, so equal scores there.
    even = df[(df.model == "monolithic w8 (even)") & (df.lam0 == 0.5)].set_index("contamination").test_kl
    oracle = df[(df.model == "Oracle w8") & (df.lam0 == 0.5)].set_index("contamination").test_kl
    assert len(even) == 2 and (even == oracle).all()
