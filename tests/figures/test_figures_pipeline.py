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


# --------------------------------------------------------------------------- interruption and concurrency

import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from pathlib import Path  # noqa: E402

from figures import provenance  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = textwrap.dedent("""
    import io, os, signal, sys, time
    sys.path[:0] = [{root!r}, {here!r}]
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    import figures.files
    from figures.cache import ResultCache
    from figures.pipeline import Caption, Context, Figure, rows_frame, run_figures
    from figures.sweep import SweepRunner
    from sweep_items import noisy_moments

    results, names, value, kill_at = sys.argv[1], sys.argv[2].split(","), float(sys.argv[3]), sys.argv[4]
    if kill_at.startswith("mid"):
        real_atomic, calls = figures.files.atomic_write, []

        def atomic_then_die(path, write, binary=True):
            # The N-th file is killed half-way through writing its temporary file.
            calls.append(path)
            if len(calls) != int(kill_at[3:]):
                return real_atomic(path, write, binary=binary)

            def half(fh):
                buf = io.BytesIO()
                write(buf)
                fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                fh.flush()
                os.kill(os.getpid(), signal.SIGKILL)

            return real_atomic(path, half, binary=binary)

        figures.files.atomic_write = atomic_then_die
    elif kill_at != "none":
        real_fsync, seen = os.fsync, []

        def fsync_then_die(fd):
            # The temporary file of the output is written and flushed but not yet renamed.
            seen.append(fd)
            if len(seen) == int(kill_at):
                os.kill(os.getpid(), signal.SIGKILL)
            real_fsync(fd)

        figures.files.os.fsync = fsync_then_die

    def make(name):
        def run(ctx):
            time.sleep(0.05)
            df = pd.DataFrame({{"x": np.arange(50), "y": value * np.arange(50), "fit_seconds": 0.1}})
            ctx.write_table(name, df, configs=[{{"seed": 0}}], results=[{{}}])
            fig, ax = plt.subplots()
            ax.plot(df.x, df.y)
            ctx.save_figure(name, fig, configs=[{{"seed": 0}}], results=[{{}}])
            # A cached sweep: served from the cache on a second run, its table must not change.
            cfgs = [{{"seed": s, "n": 20}} for s in (1, 2)]
            swept = ctx.sweep("toy", noisy_moments, cfgs)
            ctx.write_table(name + "_sweep", rows_frame(swept), configs=cfgs, results=swept)
            return Caption(f"{{name}} value {{value}}", True, "claim")
        return run

    ctx = Context("quick", results, ResultCache(os.path.join(results, "cache")), SweepRunner(progress=False))
    run_figures([Figure(n, n, make(n)) for n in names], ctx, log=lambda *_: None)
""")


def _run(results, names, value, kill_at="none", wait=True):
    script = _SCRIPT.format(root=str(ROOT), here=str(Path(__file__).parent))
    cmd = [sys.executable, "-c", script, str(results), ",".join(names), str(value), str(kill_at)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if wait:
        proc.wait(timeout=120)
    return proc


def test_killed_mid_write_leaves_old_outputs_consistent(tmp_path):
    first = _run(tmp_path, ["fig"], 1.0)
    assert first.returncode == 0, first.stderr.read()
    old_csv = (tmp_path / "tables" / "fig.csv").read_bytes()
    old_png = (tmp_path / "figures" / "fig.png").read_bytes()
    # Writes of a run, in order: timings CSV (1), table (2), its provenance (3), PNG (4), its provenance (5).
    # A kill at any of them leaves every file whole, old or new, never truncated.
    for kill_at in (1, 2, 4, 5):
        killed = _run(tmp_path, ["fig"], 2.0, kill_at=kill_at)
        assert killed.returncode == -9
        csv, png = tmp_path / "tables" / "fig.csv", tmp_path / "figures" / "fig.png"
        assert (csv.read_bytes() == old_csv) == (kill_at <= 2)
        assert (png.read_bytes() == old_png) == (kill_at <= 4)
        assert png.read_bytes().startswith(b"\x89PNG") and png.read_bytes().endswith(b"IEND\xaeB`\x82")
        assert provenance.matches(csv)
        # Between an output and its record, a kill is detectable: the record's checksum is the old file's.
        assert provenance.matches(png) == (kill_at != 5)
    done = _run(tmp_path, ["fig"], 2.0)
    assert done.returncode == 0
    for path in (tmp_path / "tables" / "fig.csv", tmp_path / "figures" / "fig.png"):
        assert provenance.matches(path)
    assert (tmp_path / "tables" / "fig.csv").read_bytes() != old_csv


def test_two_concurrent_runs_keep_every_caption(tmp_path):
    a = [f"a{i}" for i in range(6)]
    b = [f"b{i}" for i in range(6)]
    procs = [_run(tmp_path, a, 1.0, wait=False), _run(tmp_path, b, 2.0, wait=False)]
    for p in procs:
        assert p.wait(timeout=180) == 0, p.stderr.read()
    captions = json.loads((tmp_path / "figures" / "captions.json").read_text())
    assert set(captions) == set(a + b)
    summary = (tmp_path / "summary.md").read_text()
    assert all(f"[{n}]" in summary for n in a + b)
    assert set(json.loads((tmp_path / "timings.json").read_text())) == set(a + b)


def test_tables_are_free_of_timings_and_byte_identical(tmp_path):
    for _ in range(2):
        assert _run(tmp_path, ["fig"], 1.0).returncode == 0
        table = (tmp_path / "tables" / "fig.csv").read_bytes()
        assert b"fit_seconds" not in table.splitlines()[0]
    assert _run(tmp_path / "other", ["fig"], 1.0).returncode == 0
    assert (tmp_path / "other" / "tables" / "fig.csv").read_bytes() == table
    assert (tmp_path / "other" / "figures" / "captions.json").read_bytes() == \
        (tmp_path / "figures" / "captions.json").read_bytes()
    timings = pd.read_csv(tmp_path / "timings" / "fig.csv")
    assert list(timings.columns) == ["x", "fit_seconds"]


def test_cache_served_results_keep_column_order(tmp_path):
    cache = ResultCache(tmp_path)
    fresh = {"rows": [{"zeta": 1, "alpha": 2.0, "mid": "m"}], "b_key": 1, "a_key": 2}
    cache.put("stage", {"seed": 0}, fresh)
    served = cache.get("stage", {"seed": 0})
    assert list(served) == list(fresh) and list(served["rows"][0]) == ["zeta", "alpha", "mid"]


#: Files of one run of figure "fig" in the order they are written; the second member of
#: each output's pair is its provenance record.
_WRITES = ("timings/fig.csv", "tables/fig.csv", "tables/fig.csv.provenance.json", "figures/fig.png",
           "figures/fig.png.provenance.json", "tables/fig_sweep.csv", "tables/fig_sweep.csv.provenance.json",
           "figures/captions.json", "timings.json", "summary.md")


def test_killed_half_way_through_any_write_leaves_every_file_whole(tmp_path):
    """SIGKILL in the middle of writing each file in turn: every file is the old or the new one, whole."""
    new = tmp_path / "new"
    assert _run(new, ["fig"], 2.0).returncode == 0
    # Half-way through the PNG, captions.json and summary.md (a kill after a whole write: above).
    for kill_at in (4, 8, 10):
        results = tmp_path / f"run{kill_at}"
        assert _run(results, ["fig"], 1.0).returncode == 0
        old = {w: (results / w).read_bytes() for w in _WRITES}
        killed = _run(results, ["fig"], 2.0, kill_at=f"mid{kill_at}")
        assert killed.returncode == -9, killed.stderr.read()
        for i, w in enumerate(_WRITES, start=1):
            got = (results / w).read_bytes()
            if w.endswith(".provenance.json"):
                json.loads(got)  # whole JSON (its creation time differs from run to run)
                continue
            if w in ("timings.json",):
                json.loads(got)
                continue
            expected = (new / w).read_bytes() if i < kill_at else old[w]
            assert got == expected, (kill_at, w)
        # A record that does not match its file is the one sign of a kill between the two
        # (the sweep's table is the same in both runs: its old record still matches).
        for w in ("tables/fig.csv", "figures/fig.png", "tables/fig_sweep.csv"):
            changed = old[w] != (new / w).read_bytes()
            assert provenance.matches(results / w) == (not changed or _WRITES.index(w) + 2 != kill_at), (kill_at, w)
        assert old["tables/fig.csv"] != (new / "tables/fig.csv").read_bytes()
        # What a kill leaves behind is a hidden temporary file, never a partial output.
        stray = [p for p in results.rglob("*.tmp")]
        assert all(p.name.startswith(".") for p in stray) and len(stray) <= 1, stray


def test_three_concurrent_runs_keep_every_entry(tmp_path):
    """Three runs on one results folder, one figure in common: no entry lost, every file whole and matched."""
    names = {v: [f"r{v}_{i}" for i in range(4)] + ["shared"] for v in (1, 2, 3)}
    procs = [_run(tmp_path, names[v], float(v), wait=False) for v in names]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    every = {n for ns in names.values() for n in ns}
    captions = json.loads((tmp_path / "figures" / "captions.json").read_text())
    assert set(captions) == every
    assert captions["shared"]["caption"] in {f"shared value {float(v)}" for v in names}
    rows = [line for line in (tmp_path / "summary.md").read_text().splitlines() if line.startswith("| [")]
    assert sorted(r.split("]")[0][3:] for r in rows) == sorted(every)
    assert set(json.loads((tmp_path / "timings.json").read_text())) == every
    for n in every:
        for w in (f"tables/{n}.csv", f"figures/{n}.png", f"tables/{n}_sweep.csv"):
            assert provenance.matches(tmp_path / w), w


def test_cache_served_tables_are_byte_identical_to_fresh_ones(tmp_path):
    assert _run(tmp_path, ["fig"], 1.0).returncode == 0
    fresh = (tmp_path / "tables" / "fig_sweep.csv").read_bytes()
    assert fresh.splitlines()[0] == b"seed,mean,var"  # the rows' order, not sorted (mean,seed,var)
    entries = list((tmp_path / "cache").rglob("*.json"))
    assert entries, "the sweep was not cached"
    assert _run(tmp_path, ["fig"], 1.0).returncode == 0
    assert list((tmp_path / "cache").rglob("*.json")) == entries  # served, not recomputed
    assert (tmp_path / "tables" / "fig_sweep.csv").read_bytes() == fresh


def test_every_timing_column_leaves_the_tables():
    from figures.pipeline import timing_columns

    df = pd.DataFrame(columns=["seed", "seconds", "fit_seconds", "gate_fit_seconds", "seconds_experts",
                               "seconds_gate_fit", "value", "secondsworth", "n_seconds_x"])
    assert timing_columns(df) == ["seconds", "fit_seconds", "gate_fit_seconds", "seconds_experts",
                                  "seconds_gate_fit"]


def test_provenance_records_what_selects_the_kernels(monkeypatch):
    """The kernel choice (not the thread count) moved regenerated tables: the record names it."""
    import torch  # noqa: F401 - loaded, so its CPU capability is recorded

    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.delenv("MKL_CBWR", raising=False)
    rec = provenance.numerical_kernels()
    assert rec["kernel_env"]["OPENBLAS_CORETYPE"] == "Haswell" and "MKL_CBWR" not in rec["kernel_env"]
    assert rec["torch_cpu_capability"] in ("DEFAULT", "AVX2", "AVX512", "ZVECTOR", "VSX", "SVE256", "NO AVX")
    assert rec["cpu_flags"] is None or set(rec["cpu_flags"]) <= set(provenance.VECTOR_FLAGS)
    assert any(lib["internal_api"] in ("openblas", "mkl") and lib["architecture"] for lib in rec["threadpools"])
