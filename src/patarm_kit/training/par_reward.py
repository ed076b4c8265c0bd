"""PAR, the Preference-Aware Reward that trains the judge with GRPO.

For a training pair (x, y_c, y_r) the judge scores y_c n times and y_r n times. A judgment is
rewarded when it agrees with the known preference, measured against the MEAN of the other
side's valid judgments (PAPER.md, "PAR"). A judgment whose score could not be parsed is
invalid: it earns 0 and is never replaced by a number.

The pure functions here know nothing about models; `make_par_reward_func` wraps them in the
reward-function signature that TRL's GRPOTrainer calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from statistics import fmean, stdev
from typing import Any

from patarm_kit.config.rules import CHOICES
from patarm_kit.judging.outcome import pair_outcome

SIDES = ("chosen", "rejected")
# On a 1..10 score scale a 3-point margin is a clear preference: the graded reward grows
# linearly with the margin and is full from 3 points on.
DEFAULT_MARGIN_SCALE = 3.0

Score = float | None


def _is_valid(score: Score) -> bool:
    return score is not None and not math.isnan(score)


def _valid_scores(scores: Sequence[Score]) -> list[float]:
    return [float(s) for s in scores if _is_valid(s)]


def _check_mode(mode: str) -> None:
    if mode not in CHOICES["par.mode"]:  # binary and graded: the paper's PAR; format: the format reward alone (a control)
        raise ValueError(f"unknown PAR mode {mode!r}; allowed modes: {', '.join(CHOICES['par.mode'])}")


def _margin_reward(margin: float, mode: str, margin_scale: float) -> float:
    """Reward for one judgment that beats the other side's mean by `margin` points."""
    if mode == "binary":
        return 1.0 if margin > 0 else 0.0
    if mode == "format":
        return 0.0
    return min(max(margin / margin_scale, 0.0), 1.0)


def par_rewards(
    chosen_scores: Sequence[Score],
    rejected_scores: Sequence[Score],
    mode: str = "binary",
    margin_scale: float = DEFAULT_MARGIN_SCALE,
) -> tuple[list[float], list[float]]:
    """PAR rewards for the n judgments of y_c and the n judgments of y_r of one pair.

    With s̄_c, s̄_r the means of the VALID scores of each side:
    - binary: R(c_i) = 1[s_c_i > s̄_r] and R(r_j) = 1[s_r_j < s̄_c] (strict, so a tie earns 0);
    - graded: R(c_i) = clip((s_c_i - s̄_r) / margin_scale, 0, 1) and
      R(r_j) = clip((s̄_c - s_r_j) / margin_scale, 0, 1).
    An invalid (None) judgment earns 0. When either side has no valid judgment there is
    nothing to compare against, so every judgment of the pair earns 0.
    """
    _check_mode(mode)
    if margin_scale <= 0:
        raise ValueError(f"margin_scale must be positive, got {margin_scale}")
    valid_chosen = _valid_scores(chosen_scores)
    valid_rejected = _valid_scores(rejected_scores)
    if not valid_chosen or not valid_rejected:
        return [0.0] * len(chosen_scores), [0.0] * len(rejected_scores)
    mean_chosen, mean_rejected = fmean(valid_chosen), fmean(valid_rejected)
    chosen_rewards = [
        _margin_reward(s - mean_rejected, mode, margin_scale) if _is_valid(s) else 0.0
        for s in chosen_scores
    ]
    rejected_rewards = [
        _margin_reward(mean_chosen - s, mode, margin_scale) if _is_valid(s) else 0.0
        for s in rejected_scores
    ]
    return chosen_rewards, rejected_rewards


def format_reward(valid: bool, weight: float) -> float:
    """A small bonus for a well-formed (parseable) judgment, so the judge keeps the format."""
    return weight if valid else 0.0


def pair_accuracy(chosen_scores: Sequence[Score], rejected_scores: Sequence[Score]) -> float | None:
    """Does the judge prefer y_c on average? 1, 0.5 for equal means, 0; None if unscorable.

    A training metric: the fraction of pairs with s̄_c > s̄_r is what PAR tries to raise.
    """
    valid_chosen = _valid_scores(chosen_scores)
    valid_rejected = _valid_scores(rejected_scores)
    if not valid_chosen or not valid_rejected:
        return None
    return pair_outcome(fmean(valid_chosen), fmean(valid_rejected))


def rewards_for_batch(
    pair_ids: Sequence[Any],
    sides: Sequence[str],
    scores: Sequence[Score],
    mode: str = "binary",
    format_weight: float = 0.0,
    margin_scale: float = DEFAULT_MARGIN_SCALE,
) -> list[float]:
    """PAR + format reward for every completion of a batch, in the batch's order.

    Completions are grouped by pair id; both sides of each pair must be in the batch, since
    a chosen judgment is rewarded against the rejected side's mean and vice versa. Under
    several processes, call this on the gathered (global) batch.
    """
    if not len(pair_ids) == len(sides) == len(scores):
        raise ValueError(
            f"pair_ids, sides and scores differ in length: "
            f"{len(pair_ids)}, {len(sides)}, {len(scores)}"
        )
    positions: dict[Any, dict[str, list[int]]] = {}
    for index, (pair_id, side) in enumerate(zip(pair_ids, sides)):
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r} (pair {pair_id!r})")
        positions.setdefault(pair_id, {"chosen": [], "rejected": []})[side].append(index)

    if mode == "format":
        return [format_reward(_is_valid(s), 1.0) for s in scores]
    rewards = [format_reward(_is_valid(s), format_weight) for s in scores]
    for pair_id, by_side in positions.items():
        missing = [side for side in SIDES if not by_side[side]]
        if missing:
            raise ValueError(
                f"pair {pair_id!r} has no {missing[0]} completions in this batch: both sides "
                "of a pair must be judged in the same step (keep the two rows of a pair "
                "adjacent in the same batch, and gather across processes before this call)"
            )
        chosen, rejected = par_rewards(
            [scores[i] for i in by_side["chosen"]],
            [scores[i] for i in by_side["rejected"]],
            mode,
            margin_scale,
        )
        for index, reward in zip(by_side["chosen"] + by_side["rejected"], chosen + rejected):
            rewards[index] += reward
    return rewards


def grpo_advantages(rewards: Sequence[float], group_size: int, scale_rewards: str = "group") -> list[float]:
    """Each completion's advantage as TRL 1.16's GRPOTrainer computes it (_generate_and_score_completions):
    its reward minus its group's mean, divided by the group's standard deviation ("group"; Bessel-corrected,
    plus 1e-4), by the whole batch's ("batch"), or by nothing ("none"). A group (the `group_size` rollouts
    of one prompt) whose rewards are all equal gets advantage 0: it teaches nothing. For notebook 03."""
    if scale_rewards not in ("group", "batch", "none"):
        raise ValueError(f"scale_rewards must be group, batch or none, not {scale_rewards!r}")
    groups = [list(rewards[i:i + group_size]) for i in range(0, len(rewards), group_size)]
    batch_std = stdev(rewards) if len(rewards) > 1 else 0.0
    advantages = []
    for group in groups:
        mean, std = fmean(group), (stdev(group) if len(group) > 1 else 0.0)
        scale = {"group": std + 1e-4, "batch": batch_std + 1e-4, "none": 1.0}[scale_rewards]
        advantages += [(r - mean) / scale for r in group]
    return advantages


def rewards_behind(logged_mean: float, n: int, format_weight: float) -> list[float] | None:
    """The rewards behind a logged binary-PAR step whose every judgment parsed: k judgments earned
    1 + w and the other n - k earned w, with k read off the logged mean; None when no k fits it."""
    k = round((logged_mean - format_weight) * n)
    if not 0 <= k <= n or abs(k / n + format_weight - logged_mean) > 1e-4:
        return None
    return [1 + format_weight] * k + [format_weight] * (n - k)


def completion_text(completion: str | list[dict[str, Any]]) -> str:
    """The text of a completion: a plain string, or the last message of a chat completion."""
    if isinstance(completion, str):
        return completion
    return completion[-1]["content"]


def make_par_reward_func(
    parse: Callable[[str], int | None],
    mode: str = "binary",
    format_weight: float = 0.0,
    margin_scale: float = DEFAULT_MARGIN_SCALE,
) -> Callable[..., list[float]]:
    """A TRL GRPOTrainer reward function computing PAR from the judge's completions.

    The dataset must have the columns `pair_id` and `side` ("chosen"/"rejected"); TRL passes
    them repeated once per completion. `parse` turns a judgment into its score or None.
    """
    _check_mode(mode)

    def reward_func(
        prompts: list[Any], completions: list[Any], pair_id: list[Any], side: list[str], **kwargs: Any
    ) -> list[float]:
        scores = [parse(completion_text(c)) for c in completions]
        return rewards_for_batch(pair_id, side, scores, mode, format_weight, margin_scale)

    reward_func.__name__ = f"par_{mode}"  # TRL logs each reward under its function's name
    return reward_func
