"""Percentile-bootstrap confidence intervals over benchmark items (prompts).

A benchmark accuracy is a mean over a few hundred prompts, so two judges a point apart may
not differ at all. Resampling the PROMPTS (with replacement) shows how much a score would
move on another draw of prompts from the same population. Everything is seeded
(`numpy.random.Generator`), so an interval is reproduced exactly by the same call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def _resample_indices(
    n_items: int, n_boot: int, seed: int, strata: Sequence | None = None
) -> np.ndarray:
    """An (n_boot, n_items) array of item indices drawn with replacement.

    With `strata` (one label per item) each stratum is resampled on its own and keeps its
    size, e.g. the RM-Bench domains, so no domain vanishes from a replicate.
    """
    if n_items < 1:
        raise ValueError("cannot bootstrap zero items")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    if strata is None:
        return rng.integers(0, n_items, size=(n_boot, n_items))
    labels = np.asarray(strata)
    if len(labels) != n_items:
        raise ValueError(f"strata has {len(labels)} labels for {n_items} items")
    indices = np.empty((n_boot, n_items), dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        indices[:, members] = members[rng.integers(0, len(members), size=(n_boot, len(members)))]
    return indices


def _percentile_interval(replicates: np.ndarray, level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    alpha = (1 - level) / 2
    lo, hi = np.quantile(replicates, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _as_outcomes(values: Sequence[float] | np.ndarray, name: str = "values") -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of per-item outcomes")
    if np.isnan(array).any() or (array < 0).any() or (array > 1).any():
        raise ValueError(f"{name} must hold per-item outcomes in [0, 1] (no NaN, no percentages)")
    return array


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile-bootstrap interval for the mean of per-item outcomes (1, 0.5, 0 ...)."""
    outcomes = _as_outcomes(values)
    indices = _resample_indices(len(outcomes), n_boot, seed)
    return _percentile_interval(outcomes[indices].mean(axis=1), level)


def paired_bootstrap_diff(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """Mean(a) - mean(b) for two judges scored on the SAME items, with a paired interval.

    Both judges are resampled with the same prompts, so the prompt difficulty they share
    cancels out. `p_value` is the two-sided bootstrap p-value for "no difference":
    2 * min(P(diff* <= 0), P(diff* >= 0)), capped at 1 (approximate, like any bootstrap p).
    """
    first, second = _as_outcomes(a, "a"), _as_outcomes(b, "b")
    if len(first) != len(second):
        raise ValueError(f"a and b must score the same items: {len(first)} != {len(second)}")
    differences = first - second
    replicates = differences[_resample_indices(len(differences), n_boot, seed)].mean(axis=1)
    lo, hi = _percentile_interval(replicates, level)
    p_value = min(1.0, 2 * min(np.mean(replicates <= 0), np.mean(replicates >= 0)))
    return {"diff": float(differences.mean()), "lo": lo, "hi": hi, "p_value": float(p_value)}


def bootstrap_ci_of(
    statistic: Callable[[np.ndarray], np.ndarray],
    n_items: int,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    strata: Sequence | None = None,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of any statistic of the items.

    `statistic(indices)` gets every resample at once, an (n_boot, n_items) array whose rows are
    item indices (0..n_items-1, repeats allowed), and returns the n_boot replicates: numpy over
    the whole array instead of a Python loop over 1,000 rows (verify recomputes every interval of
    a run). Used for scores that are not a plain mean of one value per item, like RM-Bench's
    3x3-matrix scores; `per_resample` adapts a statistic of one row. See `_resample_indices` for
    `strata`.
    """
    indices = _resample_indices(n_items, n_boot, seed, strata)
    replicates = np.asarray(statistic(indices), dtype=float)
    if replicates.shape != (n_boot,):
        raise ValueError(f"the statistic must return one replicate per resample ({n_boot}), got shape {replicates.shape}")
    return _percentile_interval(replicates, level)


def per_resample(statistic: Callable[[np.ndarray], float]) -> Callable[[np.ndarray], np.ndarray]:
    """A statistic of one resample's indices as `bootstrap_ci_of` takes it (a loop over the rows),
    for statistics numpy cannot take over the whole array at once (RewardBench 2's Ties)."""
    return lambda indices: np.array([statistic(row) for row in indices], dtype=float)


def p_text(p_value: float, n_boot: int) -> str:
    """A bootstrap p-value as text: below the resolution of `n_boot` replicates it is "< 1/n_boot", never 0.000."""
    floor = 1 / n_boot
    return f"< {floor:g}" if p_value < floor else f"{p_value:.3f}"
