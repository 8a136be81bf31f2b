"""The reproduce-all pipeline: run figures in order, write outputs, captions and provenance.

Each figure module (listed in :mod:`figures.registry`) defines ``run(ctx)``, which computes
its sweeps through ``ctx.sweep`` (cached, parallel), writes PNG and CSV outputs through
``ctx.save_figure`` / ``ctx.write_table`` (each with a provenance record), and returns
a :class:`Caption`: one line on what the figure shows and whether the paper's claim
held, computed from the numbers.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from figures import provenance
from figures.cache import ResultCache
from figures.sweep import SweepRunner, run_sweep
from theory.errors import InvalidOptionError

PROFILES = ("quick", "full")


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

    def _record(self, path: Path, configs, results, extra) -> Path:
        seeds, checksums = collect_provenance(configs, results)
        rec = provenance.record(
            output=str(path.relative_to(self.results)), profile=self.profile, seeds=seeds,
            configs=list(configs), checksums=checksums, extra=extra,
        )
        return provenance.write_record(path, rec)

    def write_table(self, name: str, df: pd.DataFrame, *, configs, results, extra=None,
                    folder: str = "tables") -> Path:
        """Write ``results/<folder>/<name>.csv`` and its provenance record."""
        (self.results / folder).mkdir(parents=True, exist_ok=True)
        path = self.results / folder / f"{name}.csv"
        df.to_csv(path, index=False, float_format="%.6g")
        self._record(path, configs, results, extra)
        return path

    def save_figure(self, name: str, fig, *, configs, results, extra=None) -> Path:
        """Write ``results/figures/<name>.png`` (and its provenance record); close ``fig``."""
        import matplotlib.pyplot as plt

        self.figure_dir.mkdir(parents=True, exist_ok=True)
        path = self.figure_dir / f"{name}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        self._record(path, configs, results, extra)
        return path


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

    Captions of this run are merged into ``results/figures/captions.json`` (so running
    one figure alone keeps the others' captions) and ``results/summary.md`` is rewritten,
    listing figures in ``order`` (then any others by name).
    """
    ctx.figure_dir.mkdir(parents=True, exist_ok=True)
    captions_path = ctx.figure_dir / "captions.json"
    captions = json.loads(captions_path.read_text()) if captions_path.exists() else {}
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
                 "output": cap.output or f"figures/{fig.name}.png", "profile": ctx.profile,
                 "seconds": round(seconds, 1)}
        captions[fig.name] = entry
        outcome[fig.name] = {"ok": True, **entry}
        log(f"[{fig.name}] done in {seconds:.1f} s: {cap.text}")
    order = list(order) or [f.name for f in figures]
    captions_path.write_text(json.dumps(captions, indent=2, sort_keys=True) + "\n")
    write_summary(ctx.results / "summary.md", captions, order)
    return outcome


def write_summary(path: Path, captions: dict, order: Sequence[str]) -> None:
    """A markdown table of every figure with its caption and verdict."""
    verdict = {True: "held", False: "**not held**", None: "-"}
    lines = ["# Results summary", "", "Regenerated by `python -m figures`; do not edit by hand.", "",
             "| figure | claim | verdict | caption | profile | seconds |", "|---|---|---|---|---|---|"]
    names = [n for n in order if n in captions] + sorted(set(captions) - set(order))
    for name in names:
        c = captions[name]
        caption = c["caption"].replace("|", "\\|")  # a bar inside a cell would split the row
        lines.append(f"| [{name}]({c.get('output', f'figures/{name}.png')}) | {c.get('claim', '')} | "
                     f"{verdict[c.get('held')]} | {caption} | {c['profile']} | {c['seconds']} |")
    path.write_text("\n".join(lines) + "\n")
