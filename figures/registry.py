"""The figures of the study, in pipeline order (name, module, title).

Modules are imported only when their figure runs, so ``--list`` and ``--only`` stay
fast and one figure's dependencies never block another.
"""

from __future__ import annotations

import importlib
from functools import partial

from figures.pipeline import Context, Figure

ENTRIES = (
    ("lambda_sweep", "figures.fig01_lambda_sweep", "Conflict task: test KL against the test mixture, robust gate vs baselines"),
    ("contaminated", "figures.fig02_contaminated", "25% and 50% contaminated conflict task: the same sweep"),
    ("dynamics", "figures.fig03_dynamics", "Stochastic primal-dual training dynamics: lambda_t, mu_t, Z_t"),
    ("distillation", "figures.fig04_distillation", "Structural distillation: routed model vs gate vs monolithic; learned vs Bayes router"),
    ("thm3_bound", "figures.fig05_thm3_bound", "Theorem 3: true robust KL against the bound over lambda, per regime"),
    ("phase_diagram", "figures.fig06_phase_diagram", "Modular minus monolithic test KL against JSD and expert quality eps"),
    ("generalisation", "figures.fig07_generalisation", "Generalisation gap against samples per domain and gate complexity, Thm 9 bound"),
    ("gradient_conflict", "figures.fig08_gradient_conflict", "Cosine between per-domain gradients of the monolithic model during training"),
    ("gaussian_mixture", "figures.fig09_gaussian_mixture", "Gaussian-mixture domains: densities, exact grid value vs primal-dual on samples"),
    ("real_text", "figures.fig10_real_text", "Real text: NLL per byte of experts, monolithic model and robust gate"),
    ("real_world", "figures.fig14_real_world", "Real world: four text genres, parameter-matched neural experts, gate and monolithic models (Tables 1-2)"),
    ("claims", "figures.fig11_claims", "Claims audit report (every claim of the paper with a verdict)"),
    ("solver_benchmark", "figures.fig12_solver_benchmark", "Exact-solver benchmark table (dual vs cvxpy vs fixed point)"),
    ("paper_scale", "figures.fig13_paper_scale", "The paper's experiment at V = 100: learned transformer gate vs retrained models and Oracles"),
)

NAMES = tuple(name for name, _, _ in ENTRIES)


def _run_module(module: str, ctx: Context):
    return importlib.import_module(module).run(ctx)


def load(entries=ENTRIES) -> list[Figure]:
    """The :class:`Figure` of each entry; its module is imported when the figure runs, so a
    figure whose dependencies fail to import is reported like any other failing figure."""
    return [Figure(name, title, partial(_run_module, module)) for name, module, title in entries]
