"""Shared helpers for the tests of synthetic/."""

import numpy as np
from scipy.stats import chisquare

#: Significance level of every goodness-of-fit test (fixed seeds make them deterministic).
ALPHA = 1e-3


def chisquare_pvalue(samples: np.ndarray, outcomes_probs: np.ndarray, index: np.ndarray) -> float:
    """p-value of Pearson's chi-square test of sample frequencies against exact probabilities.

    ``index`` maps each sample to its outcome; outcomes with expected count below 5 are
    pooled into one bin so that the chi-square approximation holds.
    """
    m = samples.shape[0]
    observed = np.bincount(index, minlength=outcomes_probs.size).astype(float)
    expected = m * outcomes_probs
    small = expected < 5
    obs = np.append(observed[~small], observed[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    return float(chisquare(obs, exp).pvalue)


def outcome_index(seqs: np.ndarray, V: int) -> np.ndarray:
    """Lexicographic index of each sequence among all ``V^T`` (as in all_sequences)."""
    T = seqs.shape[1]
    return seqs @ (V ** np.arange(T - 1, -1, -1))
