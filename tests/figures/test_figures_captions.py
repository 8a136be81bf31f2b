"""Captions quote the rows they name: selected by label constants, not by matching label prefixes."""

import importlib

import numpy as np
import pandas as pd
from figures.fig01_lambda_sweep import COINCIDE_TOL, coincidences, size_note, sweep_caption
from figures.pipeline import PROFILES
from figures.registry import ENTRIES
from synthetic.experiments.labels import DOREMI, GROUP_DRO, LAM_STAR_TRAINED, ORACLE, ROBUST, STATIC, expert_alone
from synthetic.experiments.labels import monolithic

CFG = {"mono_width": 16, "large_width": 20, "expert_width": 8}
LAMS = np.linspace(0.0, 1.0, 5)


def _sweep_frame(worst: dict[str, float]) -> pd.DataFrame:
    """A sweep table whose model ``m`` has the V-shaped curve peaking at ``worst[m]`` (at lam_A = 0 and 1)."""
    shape = np.abs(2 * LAMS - 1)
    rows = [{"model": m, "lam0": float(l), "test_kl": w * s, "seed": 0, "parameters": 100}
            for m, w in worst.items() for l, s in zip(LAMS, shape)]
    return pd.DataFrame(rows)


def test_same_size_monolithic_is_the_mono_width_row_not_the_larger_one():
    # The larger w20 model scores better than the same-size w16 one: a prefix match on
    # "monolithic" picks w20's 0.288; the caption must quote w16's 0.304.
    worst = {ROBUST: 0.228, STATIC: 0.260, ORACLE: 0.096, monolithic(16): 0.304, monolithic(20): 0.288,
             GROUP_DRO: 0.45, DOREMI: 0.37, LAM_STAR_TRAINED: 0.42, expert_alone("A"): 0.9, expert_alone("B"): 6.0}
    text, held = sweep_caption(_sweep_frame(worst), "50% contamination", CFG)
    assert held
    assert "same-size monolithic w16 (even) 0.304" in text
    assert "(monolithic w20 (even): 0.288)" in text
    assert "best static gate) 0.260" in text


def test_caption_reports_coinciding_baselines_only_when_they_coincide():
    worst = {ROBUST: 0.5, STATIC: 0.6, monolithic(16): 0.7, monolithic(20): 0.8, GROUP_DRO: 0.9, DOREMI: 1.0,
             LAM_STAR_TRAINED: 0.7 + COINCIDE_TOL / 4}
    note = coincidences(_sweep_frame(worst), CFG)
    assert f"{LAM_STAR_TRAINED} and {monolithic(16)}" in note or f"{monolithic(16)} and {LAM_STAR_TRAINED}" in note
    assert "differ by up to 0.300" in note
    worst[LAM_STAR_TRAINED] = 0.75
    assert coincidences(_sweep_frame(worst), CFG).endswith("no two coincide")


def test_size_note_names_both_widths_and_parameter_counts():
    df = _sweep_frame({ROBUST: 0.5, monolithic(16): 0.7, monolithic(20): 0.8})
    df.loc[df.model == monolithic(16), "parameters"] = 3557
    df.loc[df.model == ROBUST, "parameters"] = 2026
    note = size_note(df, CFG)
    assert "'monolithic w16 (even)' is a width-16 transformer" in note and "3557" in note and "2026" in note


def test_every_figure_uses_the_pipeline_profile_names():
    tables = {}
    for _, module, _ in ENTRIES:
        mod = importlib.import_module(module)
        table = getattr(mod, "SETTINGS", None) or getattr(mod, "ARGS", None)
        if table is not None:  # fig02 reuses fig01's settings
            tables[module] = tuple(table)
    assert len(tables) >= len(ENTRIES) - 1
    assert {module: names for module, names in tables.items() if names != PROFILES} == {}


def test_paper_scale_statements_read_the_rows_of_the_configured_widths():
    """The fixed models and Oracles are the rows of mono_width and large_width, by name: a model
    of another width (whose label shares the prefix) does not enter the statements."""
    from figures.fig13_paper_scale import GATE, fixed_models, oracles, statements
    from synthetic.experiments.labels import sized

    def oracle(width):
        return sized(ORACLE, width)

    lams = np.linspace(0.0, 1.0, 5)
    curve = 1 + np.abs(2 * lams - 1)
    frame = {GATE: 0.5 * curve, monolithic(16): curve, monolithic(20): curve, oracle(16): 0.4 + 0 * lams,
             oracle(20): 0.45 + 0 * lams}
    rows = [{"model": m, "lam0": float(l), "test_kl": float(v), "se": 0.0} for m, c in frame.items()
            for l, v in zip(lams, c)]
    df = pd.DataFrame(rows)
    assert fixed_models(CFG) == [monolithic(16), monolithic(20)] and oracles(CFG) == [oracle(16), oracle(20)]
    assert statements(df, CFG)["gate beats both fixed retrained models at every lambda"]["held"]
    # a wider monolithic model that beats the gate is not one of the two fixed models
    wide = pd.DataFrame([{"model": monolithic(200), "lam0": float(l), "test_kl": 0.1, "se": 0.0} for l in lams])
    assert statements(pd.concat([df, wide]), CFG)["gate beats both fixed retrained models at every lambda"]["held"]
    # ... but a same-size one that beats it is
    worse = df.assign(test_kl=np.where(df.model == monolithic(16), 0.1, df.test_kl))
    assert not statements(worse, CFG)["gate beats both fixed retrained models at every lambda"]["held"]
