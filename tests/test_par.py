"""Golden tests for PAR: hand-computed rewards for the cases PAPER.md defines."""

import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patarm_kit.training.par_reward import (
    DEFAULT_MARGIN_SCALE,
    format_reward,
    grpo_advantages,
    make_par_reward_func,
    pair_accuracy,
    par_rewards,
    rewards_behind,
    rewards_for_batch,
)


def parse_score(text: str) -> int | None:
    match = re.search(r"<score>(\d+)</score>", text)
    return int(match.group(1)) if match else None


def test_binary_compares_with_the_other_sides_valid_mean():
    # mean of valid chosen = (8 + 6 + 9) / 3 = 23/3; mean of rejected = 6
    chosen, rejected = par_rewards([8, 6, None, 9], [5, 8, 5])
    assert chosen == [1.0, 0.0, 0.0, 1.0]  # 6 > 6 is false: a tie earns nothing; None earns 0
    assert rejected == [1.0, 0.0, 1.0]  # 8 < 23/3 is false


def test_all_invalid_gives_zero_to_everything():
    assert par_rewards([None, None], [None, None, None]) == ([0.0, 0.0], [0.0, 0.0, 0.0])


@pytest.mark.parametrize("mode", ["binary", "graded"])
def test_other_side_all_invalid_gives_zero_to_both_sides(mode):
    assert par_rewards([9, 8], [None, None], mode) == ([0.0, 0.0], [0.0, 0.0])
    assert par_rewards([None], [1, 2], mode) == ([0.0], [0.0, 0.0])


def test_single_judgment_per_side():
    assert par_rewards([7], [4]) == ([1.0], [1.0])
    assert par_rewards([4], [7]) == ([0.0], [0.0])
    assert par_rewards([5], [5]) == ([0.0], [0.0])


def test_equal_means():
    # both means are 6: only the chosen 7 beats the rejected mean; no rejected 6 is below 6
    assert par_rewards([5, 7], [6, 6]) == ([0.0, 1.0], [0.0, 0.0])
    assert pair_accuracy([5, 7], [6, 6]) == 0.5


def test_graded_scales_by_margin_and_clips():
    # mean chosen = 6, mean of valid rejected = 5, margin_scale 3
    chosen, rejected = par_rewards([9, 7, 5, 3], [4, 6, None], mode="graded", margin_scale=3.0)
    assert chosen == pytest.approx([1.0, 2 / 3, 0.0, 0.0])  # 4/3 clipped to 1, -2/3 to 0
    assert rejected == pytest.approx([2 / 3, 0.0, 0.0])
    assert DEFAULT_MARGIN_SCALE == 3.0


def test_unknown_mode_names_the_allowed_modes():
    with pytest.raises(ValueError, match="binary.*graded"):
        par_rewards([1], [2], mode="soft")
    with pytest.raises(ValueError, match="binary.*graded"):
        make_par_reward_func(parse_score, mode="soft", format_weight=0.0)


def test_format_reward():
    assert format_reward(True, 0.1) == 0.1
    assert format_reward(False, 0.1) == 0.0


def test_pair_accuracy():
    assert pair_accuracy([8, None, 6], [5, 5]) == 1.0
    assert pair_accuracy([4], [5, None]) == 0.0
    assert pair_accuracy([None], [5]) is None
    assert pair_accuracy([5], []) is None


def test_trl_adapter_returns_rewards_in_input_order_for_an_interleaved_batch():
    def judgment(score):
        return f"criteria ... <score>{score}</score>"

    rows = [  # (pair_id, side, completion): the two pairs interleaved, some in chat format
        ("a", "chosen", judgment(8)),
        ("b", "rejected", [{"role": "assistant", "content": judgment(6)}]),
        ("a", "rejected", judgment(5)),
        ("b", "chosen", judgment(4)),
        ("a", "chosen", [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": judgment(6)},
        ]),
        ("b", "chosen", judgment(5)),
        ("a", "rejected", "no score here"),
        ("b", "rejected", judgment(7)),
    ]
    reward_func = make_par_reward_func(parse_score, mode="binary", format_weight=0.1)
    rewards = reward_func(
        prompts=["p"] * len(rows),
        completions=[c for _, _, c in rows],
        pair_id=[p for p, _, _ in rows],
        side=[s for _, s, _ in rows],
        trainer_state=None,  # TRL passes extra keyword arguments
    )
    # pair a: chosen 8, 6 (mean 7) vs rejected 5, invalid (mean 5): all valid ones agree
    # pair b: chosen 4, 5 (mean 4.5) vs rejected 6, 7 (mean 6.5): nobody agrees
    assert rewards == pytest.approx([1.1, 0.1, 1.1, 0.1, 1.1, 0.1, 0.0, 0.1])
    assert reward_func.__name__ == "par_binary"
    assert make_par_reward_func(parse_score, "graded", 0.0).__name__ == "par_graded"


def test_missing_side_of_a_pair_is_an_error():
    with pytest.raises(ValueError, match="both sides of a pair must be judged in the same step"):
        rewards_for_batch(["a", "a", "b"], ["chosen", "rejected", "chosen"], [7, 5, 6])


def test_unknown_side_and_length_mismatch_are_errors():
    with pytest.raises(ValueError, match="side must be one of"):
        rewards_for_batch(["a", "a"], ["chosen", "loser"], [7, 5])
    with pytest.raises(ValueError, match="differ in length"):
        rewards_for_batch(["a", "a"], ["chosen"], [7, 5])


batches = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.sampled_from(["chosen", "rejected"]),
        st.one_of(st.none(), st.integers(1, 10)),
    ),
    min_size=1,
    max_size=24,
)


@given(batches, st.randoms(use_true_random=False), st.sampled_from(["binary", "graded"]))
def test_rewards_follow_their_completion_when_the_batch_is_shuffled(rows, rnd: random.Random, mode):
    # complete every pair so the batch is valid
    for pair_id in {p for p, _, _ in rows}:
        rows = rows + [(pair_id, "chosen", 5), (pair_id, "rejected", 5)]
    rewards = rewards_for_batch(*zip(*rows), mode=mode, format_weight=0.2)
    order = list(range(len(rows)))
    rnd.shuffle(order)
    shuffled = rewards_for_batch(*zip(*[rows[i] for i in order]), mode=mode, format_weight=0.2)
    assert shuffled == pytest.approx([rewards[i] for i in order])
    assert all(0.0 <= r <= 1.2 + 1e-12 for r in rewards)


def test_grpo_advantages_follow_trls_group_normalisation():
    """Group mean removed, divided by the group's Bessel-corrected std + 1e-4 (TRL 1.16); an all-equal group gets 0."""
    rewards = [1.1, 0.0, 1.1, 1.1, 1.1, 1.1, 1.1, 1.1]  # notebook 03's "one invalid judgment" case, w = 0.1
    advantages = grpo_advantages(rewards, group_size=4)
    assert advantages[4:] == [0.0] * 4
    assert advantages[:4] == pytest.approx([(r - 0.825) / (0.55 + 1e-4) for r in rewards[:4]])  # std of [1.1, 0, 1.1, 1.1]
    assert grpo_advantages(rewards, 4, "none")[:2] == pytest.approx([0.275, -0.825])
    with pytest.raises(ValueError, match="scale_rewards"):
        grpo_advantages(rewards, 4, "sequence")


def test_a_logged_reference_step_is_rebuilt_from_its_mean():
    """The reference run's first step logged mean 0.225 and std 0.354 over 8 judgments: one earned 1.1, seven 0.1."""
    import statistics

    from patarm_kit.config.loader import REPO_ROOT
    from patarm_kit.training.grpo import read_metrics

    step = read_metrics(REPO_ROOT / "results" / "reference-cpu" / "par" / "metrics.jsonl")[0]
    rebuilt = rewards_behind(step["reward"], 8, 0.1)
    assert rebuilt == [1.1] + [0.1] * 7
    assert statistics.fmean(rebuilt) == pytest.approx(step["reward"]) and statistics.stdev(rebuilt) == pytest.approx(step["reward_std"])
    assert rewards_behind(0.17, 8, 0.1) is None  # no whole number of winners gives this mean
