"""The MA2ML learner: policies, centralised critic, credit assignment, baselines and the
loop that connects them to the store (DESIGN.md section 3).

Algorithms are store-independent (``make_algorithm``); ``run_learner`` in
``ma2ml.learner.loop`` drives one against a ``Store``.
"""

from ma2ml.learner.algorithms import ALGORITHMS, make_algorithm
from ma2ml.learner.base import Algorithm, Proposal, Result
from ma2ml.settings import Settings, SettingsError

__all__ = ["ALGORITHMS", "Algorithm", "Proposal", "Result", "Settings", "SettingsError",
           "make_algorithm"]
