"""The fit's report: training curves as CSV and one PNG, to see at a glance whether it converged.

``curves.csv``: one row per logged step (``step``, ``seconds``, ``lam_k``, ``mu``, minibatch
``z`` and smoothed ``z_ema``, ``nll_k``, ``adversary_loss_k``); ``residuals.csv``: one row
per whole-set check (``step``, the adversary's ``gap``, the training-sample ``z``, its
``z_target`` and ``z_residual = |z - z_target|``, and ``z_holdout``, Z on the held-out expert
samples, NaN without a hold-out, and ``validation``, the renormalised robust objective on the
validation domains by which the returned check was selected, NaN without them);
``fit.png``: lambda, the per-domain losses, Z, and the two residuals against their
tolerances (log scale).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from modular.primal_dual import RobustGateResult


def curves_frames(res: RobustGateResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two tables of the report (see the module docstring)."""
    h = res.history
    cols: dict = {"step": h.get("step", np.zeros(0)), "seconds": h.get("seconds", np.zeros(0))}
    n = len(cols["step"])
    for key in ("lam", "nll", "adversary_loss"):
        arr = np.asarray(h.get(key, np.zeros((n, 0)))).reshape(n, -1)
        for k in range(arr.shape[1]):
            cols[f"{key}_{k}"] = arr[:, k]
    for key in ("mu", "z", "z_ema", "loss"):
        cols[key] = h.get(key, np.zeros(0))
    curves = pd.DataFrame(cols)
    z = np.asarray(h.get("check_z", np.zeros(0)), dtype=np.float64)
    target = np.asarray(h.get("check_z_target", np.ones(len(z))), dtype=np.float64)
    checks = pd.DataFrame({"step": h.get("check_step", np.zeros(0)), "gap": h.get("check_gap", np.zeros(0)),
                           "z": z, "z_target": target, "z_residual": np.abs(z - target),
                           "z_holdout": np.asarray(h.get("check_z_holdout", np.full(len(z), np.nan)), dtype=np.float64),
                           "validation": np.asarray(h.get("check_validation", np.full(len(z), np.nan)),
                                                    dtype=np.float64)})
    return curves, checks


def _atomic_csv(frame: pd.DataFrame, path: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


def write_report(directory: str, res: RobustGateResult) -> dict[str, str]:
    """Write ``curves.csv``, ``residuals.csv`` and ``fit.png`` into ``directory`` (created); return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    curves, checks = curves_frames(res)
    paths = {name: os.path.join(directory, name) for name in ("curves.csv", "residuals.csv", "fit.png")}
    _atomic_csv(curves, paths["curves.csv"])
    _atomic_csv(checks, paths["residuals.csv"])
    p = len(res.lam)
    fig, ax = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    for k in range(p):
        if f"lam_{k}" in curves:
            ax[0, 0].plot(curves.step, curves[f"lam_{k}"], color=f"C{k}", lw=1, label=f"domain {k}")
            ax[0, 1].plot(curves.step, curves[f"adversary_loss_{k}"], color=f"C{k}", lw=0.8)
        ax[0, 0].axhline(res.lam[k], color=f"C{k}", ls=":", lw=1)
    ax[0, 0].set(title="lambda_t (dotted: returned)", xlabel="step")
    ax[0, 0].legend(fontsize=7)
    ax[0, 1].set(title=f"adversary's losses a_k ({res.adversary}, minibatch)", xlabel="step")
    if len(curves):
        ax[1, 0].plot(curves.step, curves.z, lw=0.6, alpha=0.5, label="Z (minibatch)")
        ax[1, 0].plot(curves.step, curves.z_ema, lw=1.2, label="Z (smoothed)")
        ax2 = ax[1, 0].twinx()
        ax2.plot(curves.step, curves.mu, color="C3", lw=1, label="mu")
        ax2.set_ylabel("mu")
    ax[1, 0].axhline(1, color="k", ls=":", lw=1)
    ax[1, 0].set(title="Z_t and mu_t", xlabel="step")
    ax[1, 0].legend(fontsize=7, loc="upper left")
    if len(checks):
        ax[1, 1].semilogy(checks.step, np.maximum(checks.gap, 1e-16), marker=".", label="adversary's gap")
        ax[1, 1].semilogy(checks.step, np.maximum(checks.z_residual, 1e-16), marker=".", label="|Z - target| (train)")
        if np.isfinite(checks.z_holdout).any():
            ax[1, 1].semilogy(checks.step, np.maximum(np.abs(checks.z_holdout - 1), 1e-16), marker=".",
                              label="|Z - 1| (held out)")
    ax[1, 1].axhline(res.tol_gap, color="C0", ls=":", lw=1)
    ax[1, 1].axhline(res.tol_z, color="C1", ls=":", lw=1)
    ax[1, 1].set(title=f"whole-set residuals (dotted: tolerances); status {res.status}", xlabel="step")
    ax[1, 1].legend(fontsize=7)
    tmp = f"{paths['fit.png']}.tmp{os.getpid()}.png"
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, paths["fit.png"])
    return paths
