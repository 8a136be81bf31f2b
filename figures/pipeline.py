"""The reproduce-all pipeline: run figures in order, write outputs, captions and provenance.

Each figure module (listed in :mod:`figures.registry`) defines ``run(ctx)``, which computes
its sweeps through ``ctx.sweep`` (cached, parallel), writes PNG and CSV outputs through
``ctx.save_figure`` / ``ctx.write_table`` (each with a provenance record), and returns
a :class:`Caption`: one line on what the figure shows and whether the paper's claim
held, computed from the numbers.

Every file is written atomically (:mod:`figures.files`), the output before its
provenance record (which carries the output's SHA-256), so a killed run leaves each
file either old or new, never truncated. ``captions.json``, ``summary.md`` and
``timings.json`` are shared by every run on a results folder: each finished figure
merges its entry into them under a file lock, so concurrent runs lose no entry.
Timings are kept out of the tables and captions, which are then byte-identical from
run to run: timing columns of a table (``seconds``, ``*_seconds``, ``seconds_*``) go to
``timings/<name>.csv`` and the seconds per figure to ``timings.json``.
"""

from __future__ import annotations

import io
import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from figures import provenance
from figures.cache import ResultCache
from figures.files import locked, write_bytes, write_text
from figures.sweep import SweepRunner, run_sweep
from theory.errors import InvalidOptionError

PROFILES = ("quick", "full")


def timing_columns(df: pd.DataFrame) -> list[str]:
    """Columns of wall-clock timings (``seconds``, ``*_seconds``, ``seconds_*``): they differ on every run."""
    return [c for c in df.columns if c == "seconds" or str(c).endswith("_seconds") or str(c).startswith("seconds_")]


@dataclass(frozen=True)
class Caption:
    """One line for the README: what the figure shows, and whether the claim held.

    ``held`` is ``True``/``False`` for a checked claim and ``None`` when the figure makes
    no pass/fail claim. ``output`` is the main output, relative to the results folder
    (default ``figures/<name>.png``).
    """

    text: str
    held: bool | None = None
    claim: str = ""
    output: str | None = None


@dataclass(frozen=True)
class Figure:
    name: str
    title: str
    run: Callable[["Context"], Caption]


@dataclass
class Context:
    """What a figure needs: profile, output folders, the cache and the sweep runner."""

    profile: str
    results: Path
    cache: ResultCache
    runner: SweepRunner = field(default_factory=SweepRunner)

    def __post_init__(self):
        if self.profile not in PROFILES:
            raise InvalidOptionError(f"profile {self.profile!r} is not one of {', '.join(PROFILES)}")
        self.results = Path(self.results)

    @property
    def figure_dir(self) -> Path:
        return self.results / "figures"

    def sweep(self, stage: str, func, configs: Sequence[dict]) -> list[dict]:
        return run_sweep(func, configs, stage=stage, cache=self.cache, runner=self.runner)

    def _write(self, path: Path, data: bytes, configs, results, extra) -> Path:
        """Write ``data`` to ``path``, then its provenance record (both atomic).

        The pair is written under the output's lock: two runs writing the same figure
        at once would otherwise interleave, leaving one run's file beside the other's
        record.
        """
        seeds, checksums = collect_provenance(configs, results)
        rec = provenance.record(
            output=str(path.relative_to(self.results)), profile=self.profile, seeds=seeds,
            configs=list(configs), checksums=checksums, extra=extra, output_sha256=provenance.checksum(data),
        )
        with locked(path):
            write_bytes(path, data)
            provenance.write_record(path, rec)
        return path

    def write_table(self, name: str, df: pd.DataFrame, *, configs, results, extra=None,
                    folder: str = "tables") -> Path:
        """Write ``results/<folder>/<name>.csv`` and its provenance record.

        In ``tables/`` the timing columns (:func:`timing_columns`) go to
        ``timings/<name>.csv`` with the table's non-float (identifying) columns, so that
        the table itself is the same on every run. Benchmark tables keep theirs: timing
        is what they measure.
        """
        path = self.results / folder / f"{name}.csv"
        timed = timing_columns(df) if folder == "tables" else []
        if timed:
            keys = [c for c in df.columns if c not in timed and not pd.api.types.is_float_dtype(df[c])]
            timings = df[keys + timed].to_csv(index=False, float_format="%.6g")
            write_text(self.results / "timings" / f"{name}.csv", timings)
            df = df.drop(columns=timed)
        text = df.to_csv(index=False, float_format="%.6g")
        return self._write(path, text.encode("utf-8"), configs, results, extra)

    def save_figure(self, name: str, fig, *, configs, results, extra=None) -> Path:
        """Write ``results/figures/<name>.png`` (and its provenance record); close ``fig``."""
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        return self._write(self.figure_dir / f"{name}.png", buf.getvalue(), configs, results, extra)

    def write_text(self, relative: str, text: str, *, configs=None, results=None, extra=None) -> Path:
        """Write a text output ``results/<relative>`` atomically (with provenance when ``configs`` are given)."""
        path = self.results / relative
        if configs is None:
            return write_text(path, text)
        return self._write(path, text.encode("utf-8"), configs, results or [], extra)


def collect_provenance(configs, results) -> tuple[list[int], dict[str, str]]:
    """Seeds of the configurations and the union of the data checksums of the results."""
    seeds = []
    for c in configs:
        for key in ("seed", "seeds"):
            v = c.get(key) if isinstance(c, dict) else None
            if v is not None:
                seeds.extend(v if isinstance(v, (list, tuple)) else [v])
    checksums: dict[str, str] = {}
    for r in results:
        checksums.update((r or {}).get("checksums", {}))
    return seeds, checksums


def rows_frame(results: Sequence[dict]) -> pd.DataFrame:
    """Concatenate the ``rows`` (list of dicts) of each sweep result into one table."""
    return pd.DataFrame([row for r in results for row in r["rows"]])


def run_figures(figures: Sequence[Figure], ctx: Context, *, log=print, order: Sequence[str] = ()) -> dict[str, dict]:
    """Run each figure; a failing figure is reported and the others still run.

    As each figure finishes, its caption is merged into ``results/figures/captions.json``
    (so running one figure alone keeps the others' captions) and ``results/summary.md``
    is rewritten, listing figures in ``order`` (then any others by name); see
    :func:`merge_caption`.
    """
    ctx.figure_dir.mkdir(parents=True, exist_ok=True)
    order = list(order) or [f.name for f in figures]
    outcome = {}
    for fig in figures:
        start = time.perf_counter()
        log(f"[{fig.name}] {fig.title}")
        try:
            cap = fig.run(ctx)
        except Exception as exc:  # noqa: BLE001 - one broken figure must not stop the others
            seconds = time.perf_counter() - start
            outcome[fig.name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "seconds": seconds}
            log(f"[{fig.name}] FAILED after {seconds:.1f} s: {type(exc).__name__}: {exc}")
            log(traceback.format_exc())
            continue
        seconds = time.perf_counter() - start
        entry = {"title": fig.title, "caption": cap.text, "claim": cap.claim, "held": cap.held,
                 "output": cap.output or f"figures/{fig.name}.png", "profile": ctx.profile}
        merge_caption(ctx.results, fig.name, entry, round(seconds, 1), order)
        outcome[fig.name] = {"ok": True, **entry, "seconds": round(seconds, 1)}
        log(f"[{fig.name}] done in {seconds:.1f} s: {cap.text}")
    return outcome


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def merge_caption(results: Path, name: str, entry: dict, seconds: float, order: Sequence[str]) -> None:
    """Merge one figure's caption into the shared files of ``results``, under their lock.

    Read-modify-write of ``figures/captions.json``, ``summary.md`` and ``timings.json``
    happens while holding the lock, so two runs finishing at once both keep their entry.
    """
    results = Path(results)
    captions_path = results / "figures" / "captions.json"
    timings_path = results / "timings.json"
    with locked(captions_path):
        captions = _read_json(captions_path)
        captions[name] = entry
        timings = _read_json(timings_path)
        timings[name] = seconds
        write_text(captions_path, json.dumps(captions, indent=2, sort_keys=True) + "\n")
        write_text(timings_path, json.dumps(timings, indent=2, sort_keys=True) + "\n")
        write_summary(results / "summary.md", captions, order)


def write_summary(path: Path, captions: dict, order: Sequence[str]) -> None:
    """A markdown table of every figure with its caption and verdict."""
    verdict = {True: "held", False: "**not held**", None: "-"}
    lines = ["# Results summary", "", "Regenerated by `python -m figures`; do not edit by hand.", "",
             "| figure | claim | verdict | caption | profile |", "|---|---|---|---|---|"]
    names = [n for n in order if n in captions] + sorted(set(captions) - set(order))
    for name in names:
        c = captions[name]
        caption = c["caption"].replace("|", "\\|")  # a bar inside a cell would split the row
        lines.append(f"| [{name}]({c.get('output', f'figures/{name}.png')}) | {c.get('claim', '')} | "
                     f"{verdict[c.get('held')]} | {caption} | {c['profile']} |")
    write_text(path, "\n".join(lines) + "\n")
