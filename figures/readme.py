"""The README's figure list, generated from ``results/figures/captions.json``.

Every caption is computed from the numbers by its figure (:class:`figures.pipeline.Caption`);
this module only lays them out, in pipeline order, between two marker lines of the README,
so the README's list never drifts from the committed results.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from theory import commandline

BEGIN = "<!-- figure list: generated from results/figures/captions.json by figures.readme; do not edit -->"
END = "<!-- end of the generated figure list -->"
VERDICT = {True: "**held**", False: "**not held**", None: "see table"}


def render(captions: dict, order: Sequence[str], results: str = "results") -> str:
    """One numbered item per figure: title, name, claim and verdict, caption, link (and image)."""
    names = [n for n in order if n in captions] + sorted(set(captions) - set(order))
    lines = []
    for i, name in enumerate(names, 1):
        c = captions[name]
        output = f"{results}/{c.get('output', f'figures/{name}.png')}"
        claim = f"; claim: {c['claim']}: {VERDICT[c.get('held')]}" if c.get("claim") else ""
        lines.append(f"{i}. **{c['title']}** (`{name}`{claim}; profile {c['profile']}). {c['caption'].rstrip('.')}. "
                     f"[{Path(output).name}]({output})")
        if output.endswith(".png"):
            lines += ["", f"   ![{name}]({output})"]
        lines.append("")
    return "\n".join(lines)


def update_readme(path: Path, captions_path: Path, order: Sequence[str]) -> None:
    """Rewrite the generated figure list of the README at ``path`` from ``captions_path``."""
    path = Path(path)
    captions = json.loads(Path(captions_path).read_text())
    text = commandline.replace_block(path.read_text(), render(captions, order), BEGIN, END, what="figure list")
    commandline.save_text(path, text)
