"""The README's figure list is generated from captions.json, between its markers only."""

import json

import pytest

from figures.readme import BEGIN, END, render, update_readme
from theory.errors import InputError

CAPTIONS = {
    "b": {"title": "Second", "caption": "value 0.25 vs 0.5.", "claim": "b wins", "held": False, "profile": "quick"},
    "a": {"title": "First", "caption": "value 0.125", "claim": "a wins", "held": True, "profile": "quick"},
    "t": {"title": "Table", "caption": "see it", "claim": "", "held": None, "profile": "full", "output": "t.md"},
}


def test_items_follow_the_pipeline_order_with_verdicts_and_links():
    text = render(CAPTIONS, ["a", "b"])
    first, second, third = (line for line in text.splitlines() if line[:2] in ("1.", "2.", "3."))
    assert first.startswith("1. **First** (`a`; claim: a wins: **held**; profile quick). value 0.125. ")
    assert second.startswith("2. **Second** (`b`; claim: b wins: **not held**") and "0.5. [" in second
    assert "0.5.." not in second
    assert third.startswith("3. **Table** (`t`; profile full). see it. [t.md](results/t.md)")
    assert "![a](results/figures/a.png)" in text and "![t]" not in text


def test_update_rewrites_only_between_the_markers(tmp_path):
    readme, captions = tmp_path / "README.md", tmp_path / "captions.json"
    captions.write_text(json.dumps(CAPTIONS))
    readme.write_text(f"# Title\nkept above\n{BEGIN}\nstale item\n{END}\nkept below\n")
    update_readme(readme, captions, ["a", "b", "t"])
    text = readme.read_text()
    assert text.startswith(f"# Title\nkept above\n{BEGIN}\n1. **First**") and text.endswith(f"{END}\nkept below\n")
    assert "stale item" not in text
    readme.write_text("# no markers\n")
    with pytest.raises(InputError, match="figure list"):
        update_readme(readme, captions, ["a"])
