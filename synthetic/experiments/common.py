"""Helpers shared by the experiments: checksums, mixture grids, result packing."""

from __future__ import annotations

import hashlib
from contextlib import contextmanager

import numpy as np

from theory.errors import InvalidOptionError

#: Certified duality gap (nats) of the exact reference solves of the experiments: well
#: below the smallest difference any caption reports (1e-4 nats).
EXACT_TOL = 1e-9


def sha256_array(a) -> str:
    """SHA-256 of an array's dtype, shape and C-ordered bytes (equal arrays hash equally)."""
    arr = np.ascontiguousarray(np.asarray(a))
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def seed_streams(seed: int, *sizes: int, key: int | None = None) -> list[list[int]]:
    """Independent integer seeds for the random draws of one experiment run.

    Stream ``i`` holds ``sizes[i]`` seeds; every seed comes from its own child of
    ``numpy.random.SeedSequence(seed)`` (``spawn`` then ``generate_state``), so draws that
    use different streams, or different seeds of one stream, are statistically
    independent and no two of them share a generator state (as ``seed + k`` and
    ``seed * c + k`` can for another run's ``seed``). A function that derives its own
    streams from the run's seed passes a ``key`` of its own (the root is then
    ``SeedSequence([seed, key])``), so that they differ from its caller's.
    """
    streams = np.random.SeedSequence(seed if key is None else [seed, key]).spawn(len(sizes))
    return [[int(child.generate_state(1)[0]) for child in stream.spawn(n)] for stream, n in zip(streams, sizes)]


def lambda_grid(p: int, points: int, seed: int = 0) -> np.ndarray:
    """Test mixtures: for p = 2 an even grid of ``lam_0`` in [0, 1]; otherwise the p
    vertices, the centre and ``points`` Dirichlet(1) draws. Returns (m x p)."""
    if p < 2 or points < 2:
        raise InvalidOptionError(f"a mixture grid needs p >= 2 and points >= 2, got p={p}, points={points}")
    if p == 2:
        t = np.linspace(0.0, 1.0, points)
        return np.column_stack([t, 1.0 - t])
    rng = np.random.default_rng(seed)
    return np.vstack([np.eye(p), np.full((1, p), 1.0 / p), rng.dirichlet(np.ones(p), size=points)])


def lam_label(lam) -> str:
    """Compact text form of a mixture, e.g. ``0.25;0.75``."""
    return ";".join(f"{x:.4g}" for x in np.asarray(lam, dtype=float))


def require_option(name: str, value, allowed) -> None:
    if value not in allowed:
        raise InvalidOptionError(f"{name} {value!r} is not one of {', '.join(map(str, allowed))}")


@contextmanager
def single_thread_torch():
    """Run torch on one intra-op thread inside the block (restored afterwards).

    Sweep items run side by side in worker processes; one thread each avoids
    oversubscribing the cores and makes results independent of the number of workers.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def exact_probs(model, outcomes) -> np.ndarray:
    """``pi(x)`` of every enumerated outcome for a sequence model (float64)."""
    return np.exp(model.log_prob(outcomes))
