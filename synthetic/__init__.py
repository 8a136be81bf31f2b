"""Domains with known ground truth, experts, and monolithic baselines.

- Markov sequence domains (:mod:`synthetic.markov`): the conflict task, its
  contaminated variants, random sparse chains; exact log-probabilities and enumeration.
- Gaussian-mixture domains and GMM experts on grids (:mod:`synthetic.gaussian`).
- Real byte-level text from the CPython installation (:mod:`synthetic.text`).
- Count-based n-gram experts (:mod:`synthetic.ngram`) and tiny torch models
  (:mod:`synthetic.models`); monolithic baselines (:mod:`synthetic.baselines`).
- :func:`finite_instance` turns enumerable domains and experts into theory's ``(D, P)``.
"""

from synthetic.errors import EmptySplitError, EnumerationTooLargeError, UnknownDomainError
from synthetic.finite import exact_kl, finite_instance
from synthetic.markov import MarkovChain, conflict_task, contaminated, random_sparse_chain, shift_chain
from synthetic.ngram import NGramModel
from synthetic.sequences import MixtureDomain, MixtureModel, SequenceDomain, SequenceModel, all_sequences
