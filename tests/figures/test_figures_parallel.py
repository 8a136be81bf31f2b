"""The same sweep through joblib processes and a Dask LocalCluster gives the same results."""

import numpy as np

from figures.cache import ResultCache
from figures.sweep import SweepRunner, run_sweep
from sweep_items import noisy_moments


def test_joblib_and_dask_agree_with_sequential(tmp_path, worker_path):
    configs = [{"seed": s, "n": 200} for s in range(6)]
    sequential = [noisy_moments(c) for c in configs]
    joblib_res = run_sweep(noisy_moments, configs, stage="j", cache=ResultCache(tmp_path / "j"),
                           runner=SweepRunner(jobs=2, progress=False))
    dask_res = run_sweep(noisy_moments, configs, stage="d", cache=ResultCache(tmp_path / "d"),
                         runner=SweepRunner(jobs=2, scheduler="dask", progress=False))
    for seq, jl, dk in zip(sequential, joblib_res, dask_res):
        assert seq["rows"] == jl["rows"] == dk["rows"]
        np.testing.assert_array_equal(seq["sample"], jl["sample"])
        np.testing.assert_array_equal(seq["sample"], dk["sample"])
