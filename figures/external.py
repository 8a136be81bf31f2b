"""The project's own command-line reports (claims audit, solver benchmark) as cached stages.

Each runs in a fresh Python process (so its own parallelism and imports stay
isolated) inside a temporary working directory; what it prints and every file it
writes there come back as the stage result.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class ExternalCommandError(RuntimeError):
    """A report command of the project exited with a non-zero status."""


def run_module(config: dict) -> dict:
    """Run ``python -m <config['module']> <config['args']...>`` and collect its outputs.

    Returns ``stdout`` and ``files`` (relative path -> text) of what the
    command wrote in its working directory. A non-zero exit status raises
    :class:`ExternalCommandError` with the command's last stderr line.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    with tempfile.TemporaryDirectory(prefix="figures-") as tmp:
        cmd = [sys.executable, "-m", config["module"], *config["args"]]
        proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True,
                              timeout=config.get("timeout", 3600))
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no stderr)"])[-1]
            raise ExternalCommandError(f"`python -m {config['module']}` exited with status {proc.returncode}: {last}")
        files = {str(p.relative_to(tmp)): p.read_text() for p in sorted(Path(tmp).rglob("*"))
                 if p.is_file() and p.suffix in (".csv", ".md", ".json", ".txt")}
    return {"stdout": proc.stdout, "files": files, "checksums": {}}
