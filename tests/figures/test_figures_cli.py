"""The command line: listing, option errors (exit 2, one line on stderr)."""

import subprocess
import sys
from pathlib import Path

import pytest

from figures import registry

ROOT = Path(__file__).resolve().parent.parent.parent


def _run(*args):
    return subprocess.run([sys.executable, "-m", "figures", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_list_names_every_figure():
    out = _run("--list")
    assert out.returncode == 0
    assert [line.split()[0] for line in out.stdout.splitlines()] == list(registry.NAMES)


@pytest.mark.parametrize("args, needle", [
    (["--only", "nope"], "unknown figure 'nope'"),
    (["--profile", "huge"], "invalid choice: 'huge'"),
    (["--jobs", "0"], "jobs must be a positive integer"),
    (["--dask-address", "tcp://127.0.0.1:1"], "needs --scheduler dask"),
])
def test_bad_options_exit_2_with_one_line(args, needle, tmp_path):
    out = _run(*args, "--results", str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and needle in out.stderr
    assert "Traceback" not in out.stderr


def test_every_registered_module_defines_run():
    import importlib

    for name, module, _ in registry.ENTRIES:
        assert callable(importlib.import_module(module).run), name
