"""What every output records: seeds, package versions, Python, data checksums, git commit."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path


#: Distributions whose versions change numbers in the results.
PACKAGES = (
    "numpy", "scipy", "cvxpy", "clarabel", "torch", "pandas", "matplotlib",
    "scikit-learn", "joblib", "dask", "distributed",
)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(root: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment() -> dict:
    """The software environment of this run (same for every output of a run)."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "git_commit": git_commit(Path(__file__).resolve().parent.parent),
        "code_fingerprint": code_fingerprint(),
    }


def record(*, output: str, profile: str, seeds, configs, checksums: dict, extra: dict | None = None) -> dict:
    """The provenance record of one output file.

    ``seeds`` are the seeds used, ``configs`` the configurations of the sweep items that
    produced the output, ``checksums`` maps data names to SHA-256 digests.
    """
    return {
        "output": output,
        "profile": profile,
        "seeds": sorted({int(s) for s in seeds}),
        "configs": configs,
        "data_checksums": dict(sorted(checksums.items())),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **environment(),
        **(extra or {}),
    }


def write_record(path: Path, rec: dict) -> Path:
    """Write ``rec`` as ``<path>.provenance.json`` next to the output ``path``."""
    target = Path(path).with_name(Path(path).name + ".provenance.json")
    target.write_text(json.dumps(rec, indent=2, sort_keys=True, default=str) + "\n")
    return target


#: Packages whose source determines the cached results.
CODE_PACKAGES = ("theory", "modular", "synthetic")


def code_fingerprint(root: Path | None = None) -> str:
    """SHA-256 over the paths and contents of every ``.py`` file of the computing packages.

    Part of every cache key, so that changed code never serves stale results.
    """
    root = Path(root) if root is not None else Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for pkg in CODE_PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()
