"""Passes over (p x n) arrays in blocks of outcomes, memory-mapped arrays included.

The exact solvers need only p-vectors and p x p matrices between passes over the
data, so the data may live on disk: a ``np.load(path, mmap_mode="r")`` array is read
one block of columns at a time, converted to float64 per block (float32 inputs are
accumulated in float64), and the pages of a block are handed back to the kernel once
the block is done, so that the resident memory of a pass is one block, not the file.
"""

from __future__ import annotations

import mmap
import os

import numpy as np

#: Outcomes per block: a (p x BLOCK) float64 block and its temporaries stay in cache for small p.
BLOCK = 1 << 15
#: Entries per block for many rows: ``columns(p)`` keeps a (p x m) float64 block near 2 MB
#: (in L3; the per-block Python and BLAS call overheads shrink with the block count:
#: a moments pass at n = 1e7, p = 8 took 173 ms in 2 MB blocks against 191 ms in 512 kB
#: ones, min of 12 alternating runs; the validating pass was the same within noise).
BLOCK_ENTRIES = 1 << 18
#: The fewest outcomes per block, however many rows (Python's per-block cost stays small).
MIN_BLOCK = 256


def as_rows(a) -> np.ndarray:
    """``a`` as a 2-D array without copying floating arrays (a 1-D input is one row).

    Non-float inputs (integers, booleans, lists) are converted to float64 here; floating
    arrays, memory-mapped ones included, keep their dtype and are converted per block.
    """
    if isinstance(a, np.ndarray) and a.dtype.kind == "f":
        arr = a
    else:
        arr = np.asarray(a, dtype=np.float64)
    return arr[None, :] if arr.ndim == 1 else arr


def block(X, a: int, b: int, out: np.ndarray | None = None) -> np.ndarray:
    """Columns ``a:b`` of ``X`` as float64 (a view when ``X`` is already float64).

    With ``out`` (a flat float64 buffer of at least ``p (b - a)`` entries) the columns
    are copied into it as one contiguous (p x (b - a)) array: the later operations on
    the block then run on contiguous cached memory (twice as fast as on the strided
    view of a (p x n) array, measured at p = 8), and float32 inputs are converted there.
    """
    if out is None:
        return np.asarray(X[:, a:b], dtype=np.float64)
    dest = out[: X.shape[0] * (b - a)].reshape(X.shape[0], b - a)
    np.copyto(dest, X[:, a:b])
    return dest


def buffer(p: int, n: int, size: int) -> np.ndarray:
    """A flat float64 buffer for the blocks of ``size`` outcomes of a (p x n) array (:func:`block`)."""
    return np.empty(p * min(size, n))


def release(X, a: int, b: int) -> None:
    """Drop the resident pages of columns ``a:b`` of a read-only memory-mapped ``X``.

    ``MADV_DONTNEED`` on a read-only file mapping only unmaps the pages from this
    process (they stay in the page cache and are read back on the next touch), so
    the resident set of a pass stays at one block. A no-op for in-memory arrays.
    """
    base = getattr(X, "_mmap", None)
    if base is None or not hasattr(base, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return
    if X.ndim != 2 or not X.flags.c_contiguous:
        return
    page = mmap.PAGESIZE
    start = X.offset % mmap.ALLOCATIONGRANULARITY
    size = X.itemsize
    n = X.shape[1]
    for k in range(X.shape[0]):
        lo = start + (k * n + a) * size
        hi = start + (k * n + b) * size
        lo -= lo % page
        try:
            base.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
        except (OSError, ValueError):
            return


#: Columns read one by one from a memory-mapped file at most (:func:`gather`).
MAX_GATHER = 4096


def gather(X, idx: np.ndarray) -> np.ndarray | None:
    """Columns ``idx`` of ``X`` as a float64 (p x len(idx)) array (None: too many to read from a file).

    A memory-mapped ``X`` is read with ``pread`` from its file, not through the mapping:
    every scattered column would map a page per row, and the kernel maps large folios
    around each fault (11 MB for one column of a (8 x 5e6) float32 file, measured), so
    a few columns would keep much of the file resident. Beyond :data:`MAX_GATHER`
    columns a sequential pass is the better way, and None says so.
    """
    if not is_mapped(X):
        return np.asarray(X[:, idx], dtype=np.float64)
    filename = getattr(X, "filename", None)
    if idx.size > MAX_GATHER or filename is None or not X.flags.c_contiguous:
        return None
    p, n = X.shape
    size = X.itemsize
    out = np.empty((p, idx.size))
    with open(filename, "rb") as fh:
        fd = fh.fileno()
        for k in range(p):
            row = X.offset + k * n * size
            out[k] = [np.frombuffer(os.pread(fd, size, row + int(x) * size), dtype=X.dtype)[0] for x in idx]
    return out


def is_mapped(X) -> bool:
    """Whether ``X`` is backed by a memory-mapped file."""
    return getattr(X, "_mmap", None) is not None


def columns(p: int) -> int:
    """Outcomes per block for ``p`` rows: :data:`BLOCK` up to ``p = 8``, then ~2 MB blocks (:data:`MIN_BLOCK` at least)."""
    return max(MIN_BLOCK, min(BLOCK, BLOCK_ENTRIES // max(p, 1)))


def spans(n: int, size: int = BLOCK):
    """The ``(a, b)`` column ranges of the blocks of ``n`` outcomes."""
    for a in range(0, n, size):
        yield a, min(a + size, n)
