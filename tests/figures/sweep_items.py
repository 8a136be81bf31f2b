"""Module-level sweep items for the sweep tests (importable by worker processes)."""

import numpy as np


def noisy_moments(config):
    """Mean and variance of ``n`` standard normals drawn with ``seed``: deterministic per config."""
    x = np.random.default_rng(config["seed"]).standard_normal(config["n"])
    return {"rows": [{"seed": config["seed"], "mean": float(x.mean()), "var": float(x.var())}],
            "sample": x}


def fail_on_seed(config):
    """Like :func:`noisy_moments`, but raises for ``config["fail"] == config["seed"]``."""
    if config.get("fail") == config["seed"]:
        raise RuntimeError(f"interrupted at seed {config['seed']}")
    return noisy_moments(config)
