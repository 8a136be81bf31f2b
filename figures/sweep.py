"""Independent configurations of a sweep, run in parallel and cached one by one.

``run_sweep(func, configs, stage=..., runner=...)`` returns ``[func(c) for c in configs]``.
Configurations already in the cache are not recomputed; the others run through joblib
(local processes, the default) or Dask (``scheduler="dask"``: the cluster at
``address``, or a ``distributed.LocalCluster`` started for the sweep). Each result is
stored as soon as it arrives, so an interrupted sweep loses only the items in flight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from tqdm.auto import tqdm

from figures.cache import ResultCache
from theory.errors import InvalidOptionError

SCHEDULERS = ("local", "dask")


@dataclass
class SweepRunner:
    """How sweep items run: ``jobs`` parallel workers through ``scheduler``."""

    jobs: int = 1
    scheduler: str = "local"
    address: str | None = None
    progress: bool = True

    def __post_init__(self):
        if self.scheduler not in SCHEDULERS:
            raise InvalidOptionError(f"scheduler {self.scheduler!r} is not one of {', '.join(SCHEDULERS)}")
        if int(self.jobs) < 1:
            raise InvalidOptionError(f"jobs must be a positive integer, got {self.jobs}")
        if self.address is not None and self.scheduler != "dask":
            raise InvalidOptionError("a Dask address needs --scheduler dask")


def _indexed(func, index, config):
    return index, func(config)


def run_sweep(
    func: Callable[[dict], dict],
    configs: Sequence[dict],
    *,
    stage: str,
    cache: ResultCache,
    runner: SweepRunner | None = None,
) -> list[dict]:
    """Evaluate the module-level function ``func`` on every configuration, with caching.

    Parameters
    ----------
    func : callable
        ``func(config) -> dict`` (picklable: defined at module level). Must be
        deterministic given the configuration (seeds belong in the configuration).
    configs : sequence of dict
        JSON-able configurations; the cache key is the stage name and the configuration.
    stage : str
        Cache directory name for this sweep.
    cache : ResultCache
    runner : SweepRunner, optional
        Parallelism; sequential in this process by default.

    Returns
    -------
    list of dict
        The results, in the order of ``configs``.
    """
    runner = runner or SweepRunner()
    configs = list(configs)
    results: list[dict | None] = [cache.get(stage, c) for c in configs]
    todo = [i for i, r in enumerate(results) if r is None]
    if not todo:
        return results
    bar = tqdm(total=len(todo), desc=stage, disable=not runner.progress, leave=False)
    try:
        for i, res in _execute(func, [(i, configs[i]) for i in todo], runner):
            cache.put(stage, configs[i], res)
            results[i] = res
            bar.update()
    finally:
        bar.close()
    return results


def _execute(func, items, runner: SweepRunner):
    if runner.scheduler == "dask":
        yield from _execute_dask(func, items, runner)
    elif runner.jobs == 1 or len(items) == 1:
        for i, c in items:
            yield i, func(c)
    else:
        from joblib import Parallel, delayed

        parallel = Parallel(n_jobs=min(runner.jobs, len(items)), return_as="generator_unordered")
        yield from parallel(delayed(_indexed)(func, i, c) for i, c in items)


def _execute_dask(func, items, runner: SweepRunner):
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if runner.address is None:
        cluster = LocalCluster(
            n_workers=runner.jobs, threads_per_worker=1, processes=True, dashboard_address=None
        )
    client = Client(runner.address or cluster)
    try:
        futures = [client.submit(_indexed, func, i, c, pure=False) for i, c in items]
        for fut in as_completed(futures):
            yield fut.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
