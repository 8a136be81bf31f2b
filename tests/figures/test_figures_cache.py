import json

import numpy as np
import pytest

from figures.cache import ResultCache, canonical_json, config_hash
from figures.sweep import SweepRunner, run_sweep
from sweep_items import fail_on_seed, noisy_moments
from theory.errors import InputError, InvalidOptionError


def test_hash_is_canonical_and_sensitive():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": np.int64(3)}) == config_hash({"a": 3})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    assert config_hash({"a": 1.0}) != config_hash({"a": 1.0 + 1e-12})
    assert canonical_json({"b": 1, "a": 2}) == '{"a":2,"b":1}'


def test_same_config_hits_changed_config_misses(tmp_path):
    cache = ResultCache(tmp_path)
    cfg = {"seed": 3, "n": 5}
    assert cache.get("s", cfg) is None
    res = noisy_moments(cfg)
    cache.put("s", cfg, res)
    got = cache.get("s", cfg)
    assert got["rows"] == res["rows"]
    np.testing.assert_array_equal(got["sample"], res["sample"])
    assert cache.get("s", {"seed": 3, "n": 6}) is None
    assert cache.get("other", cfg) is None
    assert (cache.hits, cache.misses) == (1, 3)
    assert ResultCache(tmp_path, force=True).get("s", cfg) is None


def test_entry_is_plain_json_with_its_config(tmp_path):
    cache = ResultCache(tmp_path)
    cache.put("s", {"seed": 1, "n": 2}, {"rows": [{"x": 1.5}]})
    (entry,) = (tmp_path / "s").glob("*.json")
    meta = json.loads(entry.read_text())
    assert meta["config"] == {"seed": 1, "n": 2} and meta["result"]["rows"] == [{"x": 1.5}]
    assert not list((tmp_path / "s").glob("*.npz"))
    assert not list((tmp_path / "s").glob(".*tmp"))


def test_bad_stage_and_result_are_typed_errors(tmp_path):
    cache = ResultCache(tmp_path)
    with pytest.raises(InputError, match="stage name"):
        cache.get("../x", {})
    with pytest.raises(InputError, match="must be a dict"):
        cache.put("s", {}, [1, 2])


def test_sweep_second_run_is_all_hits(tmp_path):
    configs = [{"seed": s, "n": 50} for s in range(4)]
    first = run_sweep(noisy_moments, configs, stage="m", cache=ResultCache(tmp_path),
                      runner=SweepRunner(progress=False))
    cache = ResultCache(tmp_path)
    second = run_sweep(noisy_moments, configs, stage="m", cache=cache, runner=SweepRunner(progress=False))
    assert cache.hits == 4 and cache.misses == 0
    assert [r["rows"] for r in first] == [r["rows"] for r in second]


def test_interrupted_sweep_resumes_without_recomputing(tmp_path):
    configs = [{"seed": s, "n": 20, "fail": 2} for s in range(5)]
    with pytest.raises(RuntimeError, match="interrupted at seed 2"):
        run_sweep(fail_on_seed, configs, stage="r", cache=ResultCache(tmp_path), runner=SweepRunner(progress=False))
    assert len(list((tmp_path / "r").glob("*.json"))) == 2
    cache = ResultCache(tmp_path)
    resumed = run_sweep(noisy_moments, configs, stage="r", cache=cache, runner=SweepRunner(progress=False))
    assert cache.hits == 2 and cache.misses == 3
    direct = [noisy_moments(c) for c in configs]
    assert [r["rows"] for r in resumed] == [r["rows"] for r in direct]


def test_runner_rejects_bad_options():
    with pytest.raises(InvalidOptionError, match="scheduler 'ray'"):
        SweepRunner(scheduler="ray")
    with pytest.raises(InvalidOptionError, match="jobs"):
        SweepRunner(jobs=0)
    with pytest.raises(InvalidOptionError, match="Dask address"):
        SweepRunner(address="tcp://x:1")


def test_salt_separates_code_versions(tmp_path):
    cfg = {"seed": 1, "n": 3}
    ResultCache(tmp_path, salt="code-v1").put("s", cfg, noisy_moments(cfg))
    assert ResultCache(tmp_path, salt="code-v1").get("s", cfg) is not None
    assert ResultCache(tmp_path, salt="code-v2").get("s", cfg) is None
