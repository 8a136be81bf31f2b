"""What every output records: seeds, package versions, Python, data checksums, git commit.

Besides the code (:func:`code_fingerprint`) and package versions, floating-point results
depend on the numerical kernels the CPU selects. Tables regenerated with the same code,
versions, seeds and platform string differ in the last printed digits from one machine
to another, and the cause is the kernel choice, not threads: on one machine, with the
code of the committed tables (fingerprint 0a5b735b),

* ``generalisation`` (numpy/scipy) reproduces every committed value with
  ``OPENBLAS_CORETYPE=Haswell`` (the kernels OpenBLAS picks on a CPU without AVX-512);
  its default there, ``SkylakeX``, moves ``lam_hat`` by 2e-6 relative. OpenBLAS
  threads (1 or 2) and ``--jobs 2`` change nothing.
* ``gradient_conflict`` (a float32 torch model, one thread) differs by up to 1.1e-5
  relative, already at step 0: torch's MKL code path (``MKL_CBWR``) and ATen's
  vectorisation (``ATEN_CPU_CAPABILITY``) move the first cosine between 0.0076350952
  and 0.0076352223; thread counts change nothing. No combination tried reproduced
  the committed table (its machine was not recorded then): only ``default`` with
  ``COMPATIBLE`` gives its first cosine, and still differs in 44 of its 120 rows.

Runs on one machine are bit-identical (twice sequentially, and with ``--jobs 2``). :func:`environment` records what decides the
kernels: the CPU model and its vector-instruction flags, each BLAS library with its
kernel architecture and threads, torch's CPU capability and threads, and the
environment variables that override any of them, so a difference can be traced to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from figures.files import write_text


#: Distributions whose versions change numbers in the results.
PACKAGES = (
    "numpy", "scipy", "cvxpy", "clarabel", "torch", "pandas", "matplotlib",
    "scikit-learn", "joblib", "dask", "distributed",
)


def checksum(data: bytes) -> str:
    """SHA-256 (hex) of ``data``: the checksum of every output file and of the code."""
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


def cpu_model() -> str | None:
    """The CPU model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


#: CPU flags that decide which kernels OpenBLAS, MKL and ATen run.
VECTOR_FLAGS = ("sse4_2", "avx", "fma", "avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile")
#: Environment variables that override the kernel choice or the thread counts.
KERNEL_ENV = ("OPENBLAS_CORETYPE", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY",
              "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def cpu_flags() -> list[str] | None:
    """The :data:`VECTOR_FLAGS` this CPU has (``/proc/cpuinfo``; None where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in VECTOR_FLAGS if f in have]
    except OSError:
        pass
    return None


def numerical_kernels() -> dict:
    """What selects the floating-point kernels: CPU and flags, BLAS libraries, torch, overriding variables."""
    import numpy  # noqa: F401  (loads numpy's BLAS so that threadpoolctl sees it)
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_info

    libs = [{k: info.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "threading_layer")}
            | {"library": Path(info.get("filepath", "")).name} for info in threadpool_info()]
    out = {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "cpu_count": os.cpu_count(), "threadpools": libs,
           "kernel_env": {k: os.environ[k] for k in KERNEL_ENV if k in os.environ}}
    if "torch" in sys.modules:  # never import torch just to ask (theory-only runs do not load it)
        torch = sys.modules["torch"]
        out["torch_threads"] = torch.get_num_threads()
        out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return out


def environment() -> dict:
    """The software environment of this run (same for every output of a run): the one recorder."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "git_commit": git_commit(Path(__file__).resolve().parent.parent),
        "code_fingerprint": code_fingerprint(),
        "numerics": numerical_kernels(),
    }


def record(*, output: str, profile: str, seeds, configs, checksums: dict, extra: dict | None = None,
           output_sha256: str | None = None) -> dict:
    """The provenance record of one output file.

    ``seeds`` are the seeds used, ``configs`` the configurations of the sweep items that
    produced the output, ``checksums`` maps data names to SHA-256 digests, and
    ``output_sha256`` is the checksum of the output's bytes (a record whose checksum does
    not match its file belongs to another run).
    """
    return {
        "output": output,
        "output_sha256": output_sha256,
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
    return write_text(target, json.dumps(rec, indent=2, sort_keys=True, default=str) + "\n")


def matches(path) -> bool:
    """Whether the output ``path`` and its provenance record belong to the same run (same SHA-256)."""
    path = Path(path)
    rec_path = path.with_name(path.name + ".provenance.json")
    if not path.exists() or not rec_path.exists():
        return False
    return json.loads(rec_path.read_text()).get("output_sha256") == checksum(path.read_bytes())


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
