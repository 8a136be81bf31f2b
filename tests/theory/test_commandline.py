"""The shared command-line layer: array loading, vectors, JSON, output files, parser, exit codes."""

import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from theory.commandline import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    ArgumentParser,
    dumps,
    load_archive,
    load_array,
    parse_vector,
    positive,
    run_main,
    save_array,
    vector,
)
from theory.errors import InputError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def good(tmp_path):
    a = np.array([[0.5, 0.5], [0.25, 0.75]])
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "a.npz", x=a, y=np.arange(3))
    return tmp_path, a


def test_load_array_roundtrip_and_npz(good):
    tmp, a = good
    assert np.array_equal(load_array(tmp / "a.npy", "domains"), a)
    members = load_archive(tmp / "a.npz", "data")
    assert set(members) == {"x", "y"} and np.array_equal(members["x"], a)


@pytest.mark.parametrize("how, message", [
    ("empty", "the file is empty"),
    ("devnull", "the file is empty"),
    ("npz", "is an .npz archive"),
    ("text", "not an .npy file"),
    ("truncated", "cannot read domains file"),
    ("structured", "structured dtype"),
    ("string", "string dtype"),
    ("complex", "complex dtype"),
    ("pickle", "cannot read domains file"),
    ("missing", "does not exist"),
    ("directory", "is a directory"),
])
def test_load_array_refuses_with_one_message(good, how, message):
    tmp, a = good
    path = tmp / "bad.npy"
    if how == "empty":
        path.write_bytes(b"")
    elif how == "devnull":
        path = Path("/dev/null")
    elif how == "npz":
        path = tmp / "a.npz"
    elif how == "text":
        path.write_text("1,2,3")
    elif how == "truncated":
        path.write_bytes((tmp / "a.npy").read_bytes()[:-3])
    elif how == "structured":
        np.save(path, np.zeros(3, dtype=[("a", "f8"), ("b", "i4")]))
    elif how == "string":
        np.save(path, np.array(["0.5", "0.5"]))
    elif how == "complex":
        np.save(path, a + 1j)
    elif how == "pickle":
        np.save(path, np.array([a, None], dtype=object), allow_pickle=True)
    elif how == "missing":
        path = tmp / "nothing.npy"
    elif how == "directory":
        path = tmp
    with pytest.raises(InputError, match=message) as info:
        load_array(path, "domains")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("how, message", [
    ("npy", "single .npy array"),
    ("truncated", "cannot read data file"),
    ("object", "cannot read data file"),
    ("string", "string dtype"),
    ("empty", "the file is empty"),
])
def test_load_archive_refuses(good, how, message):
    tmp, a = good
    path = tmp / "bad.npz"
    if how == "npy":
        path = tmp / "a.npy"
    elif how == "truncated":
        path.write_bytes((tmp / "a.npz").read_bytes()[:200])
    elif how == "object":
        np.savez(path, x=np.array([a, None], dtype=object))
    elif how == "string":
        np.savez(path, x=np.array(["a"]))
    elif how == "empty":
        path.write_bytes(b"")
    with pytest.raises(InputError, match=message):
        load_archive(path, "data")


def test_load_archive_reads_corrupted_member_eagerly(good):
    tmp, _ = good
    data = bytearray((tmp / "a.npz").read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        offset = zf.infolist()[0].header_offset + 30 + len(zf.infolist()[0].filename) + 70
    data[offset:offset + 8] = b"\xff" * 8
    (tmp / "c.npz").write_bytes(bytes(data))
    with pytest.raises(InputError, match="cannot read data file"):
        load_archive(tmp / "c.npz", "data")


def test_parse_vector():
    assert parse_vector("0.2, 0.8", "--mixture").tolist() == [0.2, 0.8]
    assert parse_vector("0,inf", "--lambda-upper", allow_inf=True).tolist() == [0.0, np.inf]
    for text, message in (("a,b", "comma-separated"), ("nan,1", "NaN"), ("inf,0", "infinite"), ("", "comma")):
        with pytest.raises(InputError, match=message):
            parse_vector(text, "--mixture")
    with pytest.raises(InputError, match="expected 3"):
        parse_vector("1,0", "--mixture", length=3)


def test_json_nonfinite_becomes_null_with_note():
    text = dumps({"value": float("inf"), "kl": [0.1, float("nan")], "lam": np.array([0.5, 0.5]),
                  "gap": np.float64(-np.inf)})
    out = json.loads(text, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))
    assert out["value"] is None and out["kl"] == [0.1, None] and out["gap"] is None
    assert out["nonfinite"] == {"value": "inf", "kl[1]": "nan", "gap": "-inf"}
    assert "JSON has no NaN" in out["nonfinite_note"]
    assert "nonfinite" not in json.loads(dumps({"value": 1.0}))


def test_save_array_writes_exactly_the_path(tmp_path):
    save_array(tmp_path / "q", np.arange(3.0))
    assert (tmp_path / "q").exists() and not (tmp_path / "q.npy").exists()
    assert np.load(tmp_path / "q").tolist() == [0.0, 1.0, 2.0]
    assert not list(tmp_path.glob(".q.*"))  # no temporary file left behind
    for bad, message in (("/dev/full", "No space left"), (tmp_path / "no" / "q", "does not exist"),
                         (tmp_path, "is a directory")):
        with pytest.raises(InputError, match=message):
            save_array(bad, np.arange(3.0))


def test_parser_errors_and_defaults_in_help(capsys):
    parser = ArgumentParser(prog="tool")
    parser.add_argument("--tol", type=float, default=1e-9, help="tolerance")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--flag", action="store_true", help="a flag")
    text = parser.format_help()
    assert "tolerance (default: 1e-09)" in text and "(default: 10)" in text and "(default: False)" not in text
    with pytest.raises(InputError, match="invalid float value"):
        parser.parse_args(["--tol", "x"])


def test_run_main_exit_codes(capsys):
    assert run_main("tool", lambda: EXIT_OK) == EXIT_OK

    def bad():
        raise InputError("line one\nline two")

    def interrupted():
        raise KeyboardInterrupt

    assert run_main("tool", bad) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == "tool: error: line one line two\n"
    assert run_main("tool", interrupted) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "tool: error: interrupted\n"


def _every_parser():
    """The parser of every command of the suite, subcommands included."""
    import importlib

    from figures.__main__ import build_parser as figures_parser
    from modular.cli import build_parser as modular_parser
    from theory.cli import build_parser as theory_parser

    benchmarks = [importlib.import_module(f"benchmarks.{name}").build_parser() for name in
                  ("exact_solvers", "modular_fit", "modular_fit_defaults", "synthetic_throughput", "expert_samples_z")]
    out = []
    for parser in (theory_parser(), modular_parser(), figures_parser(), *benchmarks):
        subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        out += [parser] + [p for s in subs for p in s.choices.values()]
    return out


def test_every_parser_is_the_shared_one():
    parsers = _every_parser()
    assert len(parsers) >= 14  # theory solve, claims; modular fit, score and 4 tools; figures; 5 benchmarks
    assert all(isinstance(p, ArgumentParser) for p in parsers), [p.prog for p in parsers]


def test_out_means_one_thing_in_every_command():
    """Every --out is where the result goes, written whole; its help says so and what it is."""
    outs = {p.prog: a.help for p in _every_parser() for a in p._actions if "--out" in a.option_strings}
    assert {"python -m theory solve", "python -m theory claims", "python -m modular fit",
            "python -m modular cache", "python -m benchmarks.exact_solvers"} <= set(outs)
    for prog, text in outs.items():
        assert text.startswith("write ") and "written whole" in text, (prog, text)
        assert "exactly this path (no suffix added" in text or "into this folder" in text, (prog, text)


def test_argument_types_are_one_line_usage_errors(capsys):
    parser = ArgumentParser(prog="tool")
    parser.add_argument("--steps", type=positive(int), default=3)
    parser.add_argument("--frac", type=positive(float, below_one=True))
    parser.add_argument("--lam", type=vector("--lam"))
    assert parser.parse_args(["--steps", "4", "--frac", "0.5", "--lam", "0.5,0.5"]).lam.tolist() == [0.5, 0.5]
    for argv, message in [(["--steps", "0"], "argument --steps: must be a positive integer, got '0'"),
                          (["--steps", "1.5"], "expected an integer"), (["--frac", "1"], "in (0, 1)"),
                          (["--frac", "nan"], "in (0, 1)"), (["--lam", "nan,1"], "NaN entry"),
                          (["--lam", "a,b"], "comma-separated numbers")]:
        with pytest.raises(InputError, match=re.escape(message)):
            parser.parse_args(argv)


def test_interrupt_message_and_bare_prefix(capsys):
    def stopped():
        raise KeyboardInterrupt("interrupted after step 7: checkpoint saved to ck.pt")

    assert run_main(None, stopped) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "error: interrupted after step 7: checkpoint saved to ck.pt\n"


def test_every_help_shows_defaults():
    """Each option with a default shows it in every command's --help."""
    for p in _every_parser():
        text = " ".join(p.format_help().split())
        for action in p._actions:
            if action.default not in (None, False, "==SUPPRESS==") and action.option_strings:
                shown = f"(default: {action.default})" in text or "(default" in (action.help or "")
                assert shown, (p.prog, action.option_strings)


def test_importing_the_layer_is_cheap():
    code = ("import sys, theory.commandline, theory.cli; "
            "print(sorted(m for m in ('cvxpy', 'scipy.optimize', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
