"""Tests for the seeded percentile bootstrap."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from patarm_kit.evaluation.stats import bootstrap_ci, bootstrap_ci_of, paired_bootstrap_diff, per_resample

OUTCOMES = np.random.default_rng(0).choice([0.0, 0.5, 1.0], size=300, p=[0.3, 0.1, 0.6])


def test_interval_contains_the_mean():
    lo, hi = bootstrap_ci(OUTCOMES)
    assert lo < OUTCOMES.mean() < hi
    assert hi - lo < 0.15  # about ±2 standard errors of a mean over 300 items


def test_all_ones_gives_a_degenerate_interval():
    assert bootstrap_ci(np.ones(50)) == (1.0, 1.0)


def test_seeded_reproducibility():
    assert bootstrap_ci(OUTCOMES, seed=7) == bootstrap_ci(OUTCOMES, seed=7)
    assert bootstrap_ci(OUTCOMES, seed=7) != bootstrap_ci(OUTCOMES, seed=8)


def test_higher_level_gives_a_wider_interval():
    lo90, hi90 = bootstrap_ci(OUTCOMES, level=0.90)
    lo99, hi99 = bootstrap_ci(OUTCOMES, level=0.99)
    assert lo99 <= lo90 and hi90 <= hi99


def test_paired_diff_of_identical_judges_is_zero():
    result = paired_bootstrap_diff(OUTCOMES, OUTCOMES, n_boot=500, seed=1)
    assert result == {"diff": 0.0, "lo": 0.0, "hi": 0.0, "p_value": 1.0}


def test_paired_diff_of_a_perfect_and_a_useless_judge():
    result = paired_bootstrap_diff(np.ones(40), np.zeros(40))
    assert result == {"diff": 1.0, "lo": 1.0, "hi": 1.0, "p_value": 0.0}


def test_paired_diff_needs_the_same_items():
    with pytest.raises(ValueError, match="same items"):
        paired_bootstrap_diff(np.ones(3), np.ones(4))


def test_statistic_version_matches_the_mean_version():
    # same seed, same resampled prompts: the mean as a statistic gives the same interval
    interval = bootstrap_ci_of(lambda indices: OUTCOMES[indices].mean(axis=1), len(OUTCOMES), n_boot=300, seed=2)
    assert interval == pytest.approx(bootstrap_ci(OUTCOMES, n_boot=300, seed=2))
    one_row_at_a_time = bootstrap_ci_of(per_resample(lambda row: OUTCOMES[row].mean()), len(OUTCOMES), n_boot=300, seed=2)
    assert one_row_at_a_time == pytest.approx(interval, abs=1e-12)


def test_a_statistic_returns_one_replicate_per_resample():
    with pytest.raises(ValueError, match="one replicate per resample"):
        bootstrap_ci_of(lambda indices: OUTCOMES[indices].mean(), len(OUTCOMES), n_boot=50)


def test_strata_keep_their_size():
    labels = np.array(["a"] * 5 + ["b"] * 20)
    seen = []

    def count_a(indices: np.ndarray) -> np.ndarray:
        seen.extend(np.isin(indices, np.flatnonzero(labels == "a")).sum(axis=1))
        assert (labels[indices] == labels).all()  # each stratum keeps its places: what the benches' statistics use
        return np.zeros(len(indices))

    bootstrap_ci_of(count_a, len(labels), n_boot=50, strata=labels)
    assert seen == [5] * 50


def test_bad_inputs_are_errors():
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        bootstrap_ci([50.0, 100.0])
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1.0, 0.0], level=95)


@given(st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=1, max_size=60), st.integers(0, 2**32 - 1))
def test_interval_is_ordered_and_within_the_observed_range(values, seed):
    lo, hi = bootstrap_ci(values, n_boot=100, seed=seed)
    assert min(values) <= lo <= hi <= max(values)
