"""Random search: the baseline every learning algorithm has to beat.

It is the base class with nothing learned: the policies start uniform and
never change, and with no critic every proposal is a plain draw (repeats
avoided, as for every algorithm).
"""

from __future__ import annotations

from typing import ClassVar

from ma2ml.learner.base import Algorithm
from ma2ml.spec import AlgorithmName


class RandomSearch(Algorithm):
    """Uniform draws over the search space, never repeating a pipeline while it can."""

    name: ClassVar[AlgorithmName] = AlgorithmName.random
