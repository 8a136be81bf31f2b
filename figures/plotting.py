"""Matplotlib set-up shared by the figure scripts (headless backend, one style)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams.update({
    "figure.dpi": 120, "axes.grid": True, "grid.alpha": 0.3, "font.size": 9,
    "axes.titlesize": 10, "legend.fontsize": 8, "svg.hashsalt": "figures",
})


def panels(n: int, *, width: float = 3.6, height: float = 3.0, sharey: bool = False):
    """A row of ``n`` axes."""
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), sharey=sharey, squeeze=False)
    return fig, list(axes[0])
