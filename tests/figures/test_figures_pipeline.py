"""Outputs of the pipeline: provenance records, captions, summary, failure isolation."""

import json

import matplotlib.pyplot as plt
import pandas as pd

from figures.cache import ResultCache
from figures.pipeline import Caption, Context, Figure, run_figures
from figures.provenance import PACKAGES
from figures.sweep import SweepRunner
from sweep_items import noisy_moments


def _context(tmp_path):
    return Context("quick", tmp_path, ResultCache(tmp_path / "cache"), SweepRunner(progress=False))


def _good_figure(ctx):
    cfgs = [{"seed": s, "n": 10} for s in (3, 4)]
    results = ctx.sweep("toy", noisy_moments, cfgs)
    results[0]["checksums"] = {"toy/data": "abc123"}
    df = pd.DataFrame([row for r in results for row in r["rows"]])
    ctx.write_table("toy", df, configs=cfgs, results=results)
    fig, ax = plt.subplots()
    ax.plot(df.seed, df["mean"])
    ctx.save_figure("toy", fig, configs=cfgs, results=results)
    return Caption(f"toy mean {df['mean'].mean():.3f}", True, "toy claim")


def _broken_figure(ctx):
    raise RuntimeError("upstream missing")


def test_table_and_figure_carry_provenance(tmp_path):
    ctx = _context(tmp_path)
    outcome = run_figures([Figure("toy", "Toy figure", _good_figure)], ctx, log=lambda *_: None)
    assert outcome["toy"]["ok"]
    assert (tmp_path / "tables" / "toy.csv").exists() and (tmp_path / "figures" / "toy.png").exists()
    for path in (tmp_path / "tables" / "toy.csv.provenance.json", tmp_path / "figures" / "toy.png.provenance.json"):
        rec = json.loads(path.read_text())
        assert rec["seeds"] == [3, 4]
        assert rec["data_checksums"] == {"toy/data": "abc123"}
        assert rec["profile"] == "quick" and rec["python"].count(".") == 2
        assert set(PACKAGES) <= set(rec["packages"]) and rec["packages"]["numpy"]
        assert len(rec["code_fingerprint"]) == 64
        assert rec["configs"] == [{"seed": 3, "n": 10}, {"seed": 4, "n": 10}]
    table = pd.read_csv(tmp_path / "tables" / "toy.csv")
    assert list(table.columns) == ["seed", "mean", "var"] and len(table) == 2


def test_failing_figure_is_isolated_and_captions_merge(tmp_path):
    ctx = _context(tmp_path)
    figs = [Figure("broken", "Broken", _broken_figure), Figure("toy", "Toy figure", _good_figure)]
    outcome = run_figures(figs, ctx, log=lambda *_: None)
    assert not outcome["broken"]["ok"] and "upstream missing" in outcome["broken"]["error"]
    assert outcome["toy"]["ok"]
    captions = json.loads((tmp_path / "figures" / "captions.json").read_text())
    assert set(captions) == {"toy"} and captions["toy"]["held"] is True
    # A later run of another figure keeps the earlier captions.
    run_figures([Figure("other", "Other", lambda c: Caption("|Z - 1| = 0.01", False, output="other.md"))], ctx,
                log=lambda *_: None, order=["other", "toy"])
    captions = json.loads((tmp_path / "figures" / "captions.json").read_text())
    assert set(captions) == {"toy", "other"} and captions["other"]["held"] is False
    rows = [line for line in (tmp_path / "summary.md").read_text().splitlines() if line.startswith("| [")]
    assert rows[0].startswith("| [other](other.md) |  | **not held** | \\|Z - 1\\| = 0.01 |")
    assert rows[1].startswith("| [toy](figures/toy.png) | toy claim | held | toy mean")


def test_run_module_collects_outputs_and_reports_failure():
    import pytest

    from figures.external import ExternalCommandError, run_module

    out = run_module({"module": "json.tool", "args": ["--help"]})
    assert "usage" in out["stdout"] and out["files"] == {}
    with pytest.raises(ExternalCommandError, match="exited with status"):
        run_module({"module": "json.tool", "args": ["no-such-file.json"]})
