"""Output files written whole or not at all, and a lock for the files that concurrent runs share.

Every file of the pipeline (CSV, PNG, provenance, cache entries, ``captions.json``,
``summary.md``) goes through :func:`atomic_write`: the content is written to a
temporary file in the target's folder, flushed to disk and renamed over the target
(``os.replace`` is atomic on POSIX and Windows), so a run killed mid-write leaves the
previous file, never a truncated one. Files that several runs update by
read-modify-write (the caption and summary files) are updated under
:func:`locked`, an inter-process lock from the ``filelock`` package (a dependency of
torch already; ``fcntl.flock`` would tie the suite to POSIX).
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from filelock import FileLock

#: Seconds to wait for another run to release a shared file before giving up.
LOCK_TIMEOUT = 600


def atomic_write(path, write: Callable, *, binary: bool = True) -> Path:
    """Write ``path`` through ``write(fh)`` on a temporary file, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0o600 would hide the outputs from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_bytes(path, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    return atomic_write(path, lambda fh: fh.write(data))


def write_text(path, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    return write_bytes(path, text.encode("utf-8"))


@contextmanager
def locked(path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the inter-process lock ``<path>.lock`` (path: the shared file it protects)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_name(path.name + ".lock")), timeout=timeout):
        yield
