"""The pair outcome rule, in one place: does a judge prefer the chosen response?

Every accuracy in the kit (benchmarks, warm-up checks, PAR's rollout accuracy) counts a pair 1
when the chosen side scores higher, 0 when lower, and the tie value (config.rules.TIE_VALUES,
"half" by default, PAPER.md) when the scores are equal or either side has no valid score.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from patarm_kit.config.rules import TIE_VALUES


def tie_value(ties: str) -> float:
    """The value of a tie under a named policy; the kit's default is "half" (PAPER.md)."""
    if ties not in TIE_VALUES:
        raise ValueError(f"unknown tie policy {ties!r}; allowed: {', '.join(TIE_VALUES)}")
    return TIE_VALUES[ties]


def pair_outcomes(chosen: ArrayLike, rejected: ArrayLike, ties: str = "half") -> np.ndarray:
    """Element-wise outcome of chosen-vs-rejected comparisons: 1 win, 0 loss, else the tie value.

    A comparison is a tie when the scores are equal or either is invalid (None/NaN): an
    unparsed judgment cannot show a preference, so it is counted, never dropped.
    """
    tie = tie_value(ties)
    chosen = np.asarray(chosen, dtype=float)  # None becomes NaN
    rejected = np.asarray(rejected, dtype=float)
    undecided = np.isnan(chosen) | np.isnan(rejected) | (chosen == rejected)
    return np.where(undecided, tie, np.where(chosen > rejected, 1.0, 0.0))


def pair_outcome(chosen_score: float | None, rejected_score: float | None, ties: str = "half") -> float:
    """Outcome of one pointwise pair: 1 if chosen scores higher, 0 if lower, else the tie value."""
    return float(pair_outcomes(chosen_score, rejected_score, ties))
