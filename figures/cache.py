"""Results cached by a hash of their configuration.

A result of stage ``s`` computed from configuration ``c`` (any JSON-able dict) lives at
``<root>/<s>/<sha256(canonical JSON of c)>.json``; numpy arrays of the result go to a
sibling ``.npz``. Files are written to a temporary name and renamed, so an interrupted
run never leaves a half-written entry: a sweep that is stopped and restarted recomputes
only the configurations that had not finished.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from figures.files import atomic_write
from theory.errors import InputError


def canonical_json(config: Any) -> str:
    """The canonical JSON text of ``config``: sorted keys, no whitespace, numpy scalars as Python."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=_json_default)


def config_hash(config: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``config``."""
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"configuration value of type {type(obj).__name__} is not JSON-serialisable")


class ResultCache:
    """Store and look up results of (stage, configuration) pairs on disk.

    A result is a dict whose values are JSON-able or numpy arrays. ``force=True`` makes
    every lookup a miss (the results are recomputed and overwritten). ``salt`` (e.g. a
    fingerprint of the code) enters every key, so results of other code are never
    served. ``hits`` and ``misses`` count the lookups of this instance.
    """

    def __init__(self, root, *, force: bool = False, salt: str | None = None):
        self.root = Path(root)
        self.force = force
        self.salt = salt
        self.hits = 0
        self.misses = 0

    def paths(self, stage: str, config: Any) -> tuple[Path, Path]:
        if not stage or "/" in stage or stage.startswith("."):
            raise InputError(f"stage name {stage!r} is not a plain directory name")
        key = config_hash({"stage": stage, "config": config, "salt": self.salt})
        base = self.root / stage / key
        return base.with_suffix(".json"), base.with_suffix(".npz")

    def get(self, stage: str, config: Any) -> dict | None:
        """The cached result, or ``None`` on a miss (or always ``None`` when forcing)."""
        meta_path, arr_path = self.paths(stage, config)
        if self.force or not meta_path.exists():
            self.misses += 1
            return None
        meta = json.loads(meta_path.read_text())
        result = dict(meta["result"])
        if meta.get("arrays"):
            with np.load(arr_path, allow_pickle=False) as npz:
                result.update({name: npz[name] for name in meta["arrays"]})
        self.hits += 1
        return result

    def put(self, stage: str, config: Any, result: dict) -> None:
        """Store ``result`` (arrays first, then the JSON entry that marks it complete)."""
        if not isinstance(result, dict):
            raise InputError(f"stage {stage}: a cached result must be a dict, got {type(result).__name__}")
        meta_path, arr_path = self.paths(stage, config)
        arrays = {k: np.asarray(v) for k, v in result.items() if isinstance(v, np.ndarray)}
        plain = {k: v for k, v in result.items() if k not in arrays}
        if arrays:
            atomic_write(arr_path, lambda fh: np.savez_compressed(fh, **arrays))
        # Keys keep their order (no sort_keys): a result served from the cache must give
        # the same table columns, in the same order, as a fresh run.
        text = json.dumps(
            {"stage": stage, "config": config, "salt": self.salt, "arrays": sorted(arrays), "result": plain},
            default=_json_default,
        )
        atomic_write(meta_path, lambda fh: fh.write(text.encode("utf-8")))
