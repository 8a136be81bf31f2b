"""The command-line layer shared by ``python -m theory``, ``modular``, ``figures`` and the benchmarks.

Every command keeps one contract: exit status :data:`EXIT_OK` (0) with its answer,
:data:`EXIT_BAD_INPUT` (2) with exactly one line on stderr, :data:`EXIT_NOT_CONVERGED` (3)
with the result still printed, :data:`EXIT_INTERRUPTED` (130) after Ctrl-C; never a
traceback for anything a user can type or point at. This module holds what that needs:
array files read without pickled code and with their dtype checked, comma-separated
vectors, an argparse parser whose usage errors are one line and whose ``--help`` shows
every default, JSON that is valid JSON (NaN and infinities become ``null`` with a note),
and ``--out`` files written at exactly the path given.

``--out`` means one thing in every command: *where the command's result goes*, at
exactly that path (no suffix added), written whole (a temporary file renamed into
place, so an interrupted run leaves the old file or the new one) and refused before any
work when its folder is missing. It is a file for a command with one result (``theory
solve``: the gated model q as ``.npy``; ``modular fit``: the JSON result with its
training history; ``theory claims`` and most benchmarks: a report or CSV) and a folder
for a command that writes several (``modular cache``, ``benchmarks.modular_fit``);
:func:`add_out_argument` writes that into every ``--help``.

It imports only the standard library, numpy and :mod:`theory.errors`, so every package
(theory is the lowest layer) can use it and a command can reject bad input before it
loads cvxpy, scipy.optimize or torch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from theory.errors import InputError, SolverFailedError

#: Exit statuses (shared by every command of the suite).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_CONVERGED = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C

#: First bytes of a ``.npy`` file and of a zip archive (``.npz``).
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"

#: dtype kinds of plain numeric arrays: bool, signed and unsigned integer, float.
NUMERIC_KINDS = "biuf"

_KIND_NAMES = {"c": "complex", "O": "object", "U": "string", "S": "bytes", "V": "structured/void",
               "M": "datetime", "m": "timedelta"}


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show ``(default: X)`` for every option that has a meaningful default.

    argparse's own formatter skips options without a help text and prints ``None``
    and ``False`` defaults; here a missing help still gets its default, and ``None``
    (help explains what happens) and ``False`` (an off flag) are left out.
    """

    def _get_help_string(self, action):
        help_text = action.help or ""
        default = action.default
        if (default is None or default is False or default is argparse.SUPPRESS
                or "%(default)" in help_text or "(default" in help_text
                or not (action.option_strings or action.nargs in ("?", "*"))):
            return help_text
        return f"{help_text} (default: %(default)s)".strip()


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors raise :class:`~theory.errors.InputError` (one line, exit 2).

    Sub-parsers made with ``add_subparsers`` are of the same class and every parser
    uses :class:`DefaultsHelpFormatter` unless told otherwise.
    """

    def __init__(self, *args, formatter_class=DefaultsHelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def add_argument(self, *args, **kwargs):
        # argparse prints no help line (and so no default) for an option without help text.
        if kwargs.get("help") is None and kwargs.get("default") not in (None, False):
            kwargs["help"] = "(default: %(default)s)"
        return super().add_argument(*args, **kwargs)

    def error(self, message):
        raise InputError(message)


def one_line(text: str) -> str:
    """``text`` with its line breaks folded, so that an error message is one line."""
    return " ".join(str(text).split())


def _prefix(prog: str | None) -> str:
    return f"{prog}: " if prog else ""


def print_error(prog: str | None, exc: BaseException | str, stream=None) -> None:
    """Print ``<prog>: error: <message>`` (``error: <message>`` without ``prog``) as exactly one line on stderr."""
    message = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
    print(f"{_prefix(prog)}error: {one_line(message)}", file=stream if stream is not None else sys.stderr)


def run_main(prog: str | None, body: Callable[[], int]) -> int:
    """Run a command's ``body`` under the exit-status contract.

    Bad input (:class:`InputError`, which every option and file check raises) gives one
    line and :data:`EXIT_BAD_INPUT`; a third-party solver failure gives one line and
    :data:`EXIT_FAILED`; Ctrl-C gives one line and :data:`EXIT_INTERRUPTED` (whatever the
    command saved before, e.g. a checkpoint, stays on disk). Anything else is a bug and
    keeps its traceback.

    Warnings raised meanwhile (numpy's RuntimeWarning, a ConvergenceWarning) are held back:
    printed after a result, dropped before a one-line error, which then stays one line.
    Every line starts with ``<prog>: `` unless ``prog`` is empty (``python -m modular``
    keeps the bare ``error: ...`` its users' scripts match).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            status = body()
        except InputError as exc:
            print_error(prog, exc)
            return EXIT_BAD_INPUT
        except SolverFailedError as exc:
            print_error(prog, exc)
            return EXIT_FAILED
        except KeyboardInterrupt as exc:  # a subclass may say what was saved (the fit's FitInterrupted)
            print_error(prog, str(exc) or "interrupted")
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            # stdout closed by the reader (``| head``): nothing more can be said there.
            sys.stderr.close()
            return EXIT_FAILED
    for w in caught:
        print(f"{_prefix(prog)}warning: {one_line(w.message)}", file=sys.stderr)
    return status


# --------------------------------------------------------------------------- arrays

def _file_head(path: str, name: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(len(NPY_MAGIC))
    except FileNotFoundError:
        raise InputError(f"cannot read {name} file {path!r}: it does not exist") from None
    except IsADirectoryError:
        raise InputError(f"cannot read {name} file {path!r}: it is a directory") from None
    except OSError as exc:
        raise InputError(f"cannot read {name} file {path!r}: {exc.strerror or exc}") from None


def check_dtype(arr: np.ndarray, name: str, kinds: str = NUMERIC_KINDS) -> np.ndarray:
    """Refuse arrays whose dtype is not of the allowed ``kinds`` (default: bool, int, float).

    Structured, string, object and complex arrays are refused by name: converting them
    to float would fail with a traceback or, for complex, drop the imaginary part.
    """
    dt = arr.dtype
    if dt.names is not None or dt.kind not in kinds:
        kind = "structured" if dt.names is not None else _KIND_NAMES.get(dt.kind, dt.kind)
        raise InputError(f"{name} has {kind} dtype {dt.str}; expected a plain numeric array")
    return arr


def _load_npy(path: str, name: str, mmap_mode=None) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode=mmap_mode)
    except (OSError, ValueError, EOFError, TypeError) as exc:
        raise InputError(f"cannot read {name} file {path!r}: {one_line(exc) or type(exc).__name__}") from None
    return arr


def load_array(path, name: str, *, kinds: str = NUMERIC_KINDS, mmap_mode=None) -> np.ndarray:
    """Read one array from the ``.npy`` file ``path``, without executing pickled code.

    ``mmap_mode="r"`` maps the file instead of reading it (arrays larger than memory).

    Refused with an :class:`InputError` naming ``name``: a missing, unreadable or empty
    file (``/dev/null`` included), a zip archive (an ``.npz`` where an ``.npy`` is
    expected), anything else that is not an ``.npy`` file, a truncated file, an object
    (pickled) array, and a dtype not of ``kinds`` (see :func:`check_dtype`).
    """
    path = os.fspath(path)
    head = _file_head(path, name)
    if not head:
        raise InputError(f"cannot read {name} file {path!r}: the file is empty")
    if head.startswith(ZIP_MAGIC):
        raise InputError(f"cannot read {name} file {path!r}: it is an .npz archive; expected one array in an .npy file")
    if head != NPY_MAGIC:
        raise InputError(f"cannot read {name} file {path!r}: not an .npy file (no NUMPY header)")
    return check_dtype(_load_npy(path, name, mmap_mode), name, kinds)


def load_archive(path, name: str, *, kinds: str = NUMERIC_KINDS, text_members=()) -> dict[str, np.ndarray]:
    """Read every member of the ``.npz`` archive ``path`` into memory, checked.

    Refused with an :class:`InputError`: a missing, unreadable or empty file, a plain
    ``.npy`` file (an array where an archive is expected), a truncated or corrupted
    archive (members are read eagerly so that a bad one fails here, not later), object
    members, and members whose dtype is not of ``kinds`` (members named in
    ``text_members`` may also be unicode strings: names and checksums that travel with
    the data).
    """
    path = os.fspath(path)
    head = _file_head(path, name)
    if not head:
        raise InputError(f"cannot read {name} file {path!r}: the file is empty")
    if head == NPY_MAGIC:
        raise InputError(f"cannot read {name} file {path!r}: it is a single .npy array; expected an .npz archive")
    if not head.startswith(ZIP_MAGIC):
        raise InputError(f"cannot read {name} file {path!r}: not an .npz archive")
    out = {}
    try:
        # Opened here, not by np.load: numpy leaks its own handle when the zip directory is bad.
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
            for key in npz.files:
                out[key] = check_dtype(npz[key], f"{name} member {key!r}", kinds + "U" if key in text_members else kinds)
    except InputError:
        raise
    except (OSError, ValueError, EOFError, TypeError, KeyError, zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise InputError(f"cannot read {name} file {path!r}: {one_line(exc) or type(exc).__name__}") from None
    return out


# --------------------------------------------------------------------------- vectors and numbers

def parse_vector(text: str, name: str, *, length: int | None = None, allow_inf: bool = False) -> np.ndarray:
    """Parse ``"a,b,c"`` into a float64 vector; NaN always, infinities unless ``allow_inf``, refused."""
    parts = [t.strip() for t in str(text).split(",")]
    try:
        vec = np.array([float(t) for t in parts], dtype=np.float64)
    except ValueError:
        raise InputError(f"{name} must be comma-separated numbers, got {text!r}") from None
    if np.isnan(vec).any():
        raise InputError(f"{name} has a NaN entry ({text!r}); expected finite numbers")
    if not allow_inf and np.isinf(vec).any():
        raise InputError(f"{name} has an infinite entry ({text!r}); expected finite numbers")
    if length is not None and vec.shape[0] != length:
        raise InputError(f"{name} has {vec.shape[0]} values; expected {length}")
    return vec


def check_number(value: float, name: str, *, positive: bool = False, nonnegative: bool = False,
                 finite: bool = True) -> float:
    """Refuse NaN (always), infinities (when ``finite``) and values of the wrong sign."""
    if math.isnan(value) or (finite and math.isinf(value)):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if positive and not value > 0:
        raise InputError(f"{name} must be positive, got {value:g}")
    if nonnegative and not value >= 0:
        raise InputError(f"{name} must be non-negative, got {value:g}")
    return value


def positive(kind=float, *, zero: bool = False, below_one: bool = False) -> Callable[[str], Any]:
    """argparse ``type``: a finite number > 0 (>= 0 with ``zero``; also < 1 with ``below_one``).

    The usage error names the option (argparse adds ``argument --x:``) and is one line.
    """
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if not math.isfinite(v) or v < 0 or (v == 0 and not zero) or (below_one and v >= 1):
            if kind is int:
                what = "a non-negative integer" if zero else "a positive integer"
            else:
                what = "in (0, 1)" if below_one else ("finite and >= 0" if zero else "finite and > 0")
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return v

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def vector(name: str, **kwargs) -> Callable[[str], np.ndarray]:
    """argparse ``type``: :func:`parse_vector` of the option ``name`` (one-line usage error)."""
    def parse(text: str) -> np.ndarray:
        try:  # argparse already names the option: the message says "the value"
            return parse_vector(text, "the value", **kwargs)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = "vector"
    return parse


def add_out_argument(parser: argparse.ArgumentParser, what: str, *, folder: bool = False,
                     creates_folder: bool = False, **kwargs):
    """Add ``--out``, with the one meaning it has in every command (see the module docstring).

    ``what`` says what is written (``"the gated model q as an .npy array"``); ``folder``
    for commands whose result is several files in one folder; ``creates_folder`` for
    commands that create the missing folder of their output file.
    """
    if folder:
        where = "into this folder (created; each file in it written whole)"
    else:
        made = "its folder is created" if creates_folder else "its folder must exist"
        where = f"to exactly this path (no suffix added; written whole; {made})"
    return parser.add_argument("--out", help=f"write {what} {where}", **kwargs)


def as_input_error(exc: OSError, what: str = "file") -> InputError:
    """An :class:`InputError` naming the path of a failed read or write, in one line."""
    path = exc.filename if exc.filename is not None else "?"
    return InputError(f"cannot access {what} {str(path)!r}: {exc.strerror or exc}")


# --------------------------------------------------------------------------- JSON

#: Key under which :func:`json_ready` lists the fields it wrote as null.
NONFINITE_KEY = "nonfinite"
NONFINITE_NOTE = "JSON has no NaN or infinity: the fields listed in 'nonfinite' were not finite and are written as null"


def json_ready(obj: Any) -> Any:
    """``obj`` with NaN and infinities replaced by ``None``; a dict gets a note saying which.

    The top-level dict gains ``"nonfinite": {field path: "nan" | "inf" | "-inf"}`` and
    ``"nonfinite_note"`` when anything was replaced, so a reader can tell a missing
    value from an infinite one.
    """
    found: dict[str, str] = {}

    def walk(x, path):
        if isinstance(x, dict):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(x)]
        if isinstance(x, np.ndarray):
            return walk(x.tolist(), path)
        if isinstance(x, np.generic):
            x = x.item()
        if isinstance(x, float) and not math.isfinite(x):
            found[path] = "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
            return None
        return x

    out = walk(obj, "")
    if found and isinstance(out, dict):
        out[NONFINITE_KEY] = found
        out["nonfinite_note"] = NONFINITE_NOTE
    return out


def dumps(obj: Any, **kwargs) -> str:
    """Valid JSON text of ``obj`` (see :func:`json_ready`); never ``NaN`` or ``Infinity``."""
    return json.dumps(json_ready(obj), allow_nan=False, **kwargs)


# --------------------------------------------------------------------------- output files

def check_output_path(path, name: str = "--out") -> Path:
    """Refuse, before any work is done, an output path that cannot be written.

    The folder must exist and the path must not be a folder. Device files such as
    ``/dev/null`` or ``/dev/full`` are allowed (a write error on them is reported
    when writing).
    """
    target = Path(os.fspath(path))
    if str(path) == "":
        raise InputError(f"{name} is an empty path")
    if target.is_dir():
        raise InputError(f"cannot write {name} file {str(target)!r}: it is a directory")
    parent = target.parent
    if not parent.is_dir():
        raise InputError(f"cannot write {name} file {str(target)!r}: folder {str(parent)!r} does not exist")
    if not target.exists() and not os.access(parent, os.W_OK):
        raise InputError(f"cannot write {name} file {str(target)!r}: folder {str(parent)!r} is not writable")
    return target


def write_output(path, write: Callable[[Any], None], name: str = "--out", *, binary: bool = True) -> Path:
    """Write a user's output file at exactly ``path`` (no suffix added).

    ``write(fh)`` writes the content to an open file. A regular file (or a new path) is
    written to a temporary file in the same folder and renamed over ``path``, so an
    interrupted run leaves either the old file or the new one; anything else that
    exists (a device such as ``/dev/full``, a pipe) is written in place. Any write
    error is an :class:`InputError` (exit 2).
    """
    target = check_output_path(path, name)
    mode = "wb" if binary else "w"
    try:
        if target.exists() and not target.is_file():
            with open(target, mode) as fh:
                write(fh)
                fh.flush()
            return target
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, mode) as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise InputError(f"cannot write {name} file {str(target)!r}: {exc.strerror or exc}") from None
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_array(path, array: np.ndarray, name: str = "--out") -> Path:
    """Save ``array`` as ``.npy`` at exactly ``path`` (numpy's ``np.save`` would append ``.npy``)."""
    return write_output(path, lambda fh: np.save(fh, np.asarray(array), allow_pickle=False), name)


def save_text(path, text: str, name: str = "--out") -> Path:
    """Write ``text`` at exactly ``path`` (see :func:`write_output`)."""
    return write_output(path, lambda fh: fh.write(text.encode("utf-8")), name)


def print_json(obj: Any, **kwargs) -> None:
    """Print ``obj`` as one valid JSON document on stdout."""
    print(dumps(obj, **kwargs))


__all__: Sequence[str] = (
    "EXIT_OK", "EXIT_FAILED", "EXIT_BAD_INPUT", "EXIT_NOT_CONVERGED", "EXIT_INTERRUPTED",
    "ArgumentParser", "DefaultsHelpFormatter", "run_main", "print_error", "one_line",
    "load_array", "load_archive", "check_dtype", "parse_vector", "check_number", "positive", "vector",
    "add_out_argument", "as_input_error",
    "json_ready", "dumps", "print_json", "check_output_path", "write_output", "save_array", "save_text",
)


def _block_span(text: str, begin: str, end: str, what: str) -> tuple[int, int]:
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise InputError(f"the README has no generated {what} block (markers {begin!r} ... {end!r})")
    return start + len(begin), stop


def replace_block(text: str, block: str, begin: str, end: str, *, what: str) -> str:
    """``text`` with the part between the marker lines ``begin`` and ``end`` replaced by ``block``.

    The one way a command rewrites a generated part of a hand-written file (the README's
    claims audit and figure list): everything outside the markers is kept byte for byte.
    """
    start, stop = _block_span(text, begin, end, what)
    return text[:start] + "\n" + block + text[stop:]


def current_block(text: str, begin: str, end: str, *, what: str) -> str:
    """The generated part of ``text`` between the marker lines ``begin`` and ``end``."""
    start, stop = _block_span(text, begin, end, what)
    return text[start + 1: stop]
