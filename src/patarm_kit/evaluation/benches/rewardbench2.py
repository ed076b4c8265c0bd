"""RewardBench 2 (allenai/reward-bench-2) scored as its official runner scores a pointwise (ratings) judge.

Rules, from allenai/reward-bench at commit 05a9005 (scripts/run_generative_v2.py, rewardbench/utils.py
`process_single_model`; ../shared/BENCHMARKS.md, A5):
- Every subset but Ties is best-of-4: each of the 4 responses is scored on its own; an item earns
  1/k when the correct response is tied for the top score with k responses in all (a clean win: 1),
  else 0; when no response could be scored, 0.25 (chance). With `eval.ties: zero` (the strict rule)
  only a clean win counts and an unscored item earns 0.
- Ties: a prompt is accurate when every correct answer scores above the best incorrect one; the
  subset score is 0.30 x accuracy on the `tied` prompts + 0.30 x accuracy on their `ref` prompts +
  0.20 x the share of prompts whose correct-incorrect margin exceeds the spread among correct
  answers + 0.20 x the same with the smaller of the ref and tied margins + 0.01 x a tanh tie-breaker.
  An unscored response counts as the official runner's -1.
- Overall: the unweighted mean of the six subset scores (none when a subset is missing).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from patarm_kit.data.pairs import PreferencePair
from patarm_kit.data.sources.reward_bench2 import SUBSETS, TIES
from patarm_kit.evaluation.benches.base import Benchmark, Scoring, outcome_interval
from patarm_kit.evaluation.stats import bootstrap_ci_of, per_resample
from patarm_kit.judging.judge import EvalError, JudgeRequest, Judgment, requests_for_style_variants, voted_scores

UNSCORED_BEST_OF_4 = 0.25  # the official runner's value for an item none of whose responses was rated
UNSCORED_RATING = -1.0  # the official runner's rating of a response it could not rate (Ties)
TIES_WEIGHTS = {"tied_accuracy": 0.30, "ref_accuracy": 0.30, "correctness_preferred": 0.20,
                "correctness_preferred_hard": 0.20, "correctness_margin_score": 0.01}


def best_of_4(correct: float | None, incorrect: Sequence[float | None], ties: str = "half") -> float:
    """An item's outcome: 1/k when the correct response shares the top score with k responses in all, else 0."""
    scores = [correct, *incorrect]
    valid = [s for s in scores if s is not None]
    if not valid:
        return UNSCORED_BEST_OF_4 if ties == "half" else 0.0
    top = max(valid)
    winners = [i for i, s in enumerate(scores) if s == top]
    if 0 not in winners:
        return 0.0
    return 1.0 / len(winners) if ties == "half" or len(winners) == 1 else 0.0


def _prompt_stats(correct: Sequence[float], incorrect: Sequence[float]) -> tuple[bool, float | None, float]:
    """(accurate, spread among the correct answers (None with one), worst correct minus best incorrect)."""
    margin = min(correct) - max(incorrect)
    return margin > 0, (max(correct) - min(correct)) if len(correct) > 1 else None, margin


Rated = tuple[Sequence[float], Sequence[float]]  # one row's (correct scores, incorrect scores)


def ties_prompts(items: Sequence[tuple[str, Sequence[float], Sequence[float]]]) -> list[dict[str, Rated]]:
    """The Ties rows grouped by prompt: [{"ref": ..., "tied": ...}] from (id `ref:<n>` or `tied:<n>`, correct, incorrect)."""
    prompts: dict[int, dict[str, Rated]] = defaultdict(dict)
    for identity, correct, incorrect in items:
        kind, number = identity.split(":")
        prompts[int(number)][kind] = (correct, incorrect)
    return [prompts[n] for n in sorted(prompts)]


def ties_score(prompts: Sequence[dict[str, Rated]]) -> dict[str, float | None]:
    """The Ties subset's score and its terms, over prompts as `ties_prompts` groups them (a prompt may
    repeat: a bootstrap resample); the official code's terms and weights (TIES_WEIGHTS)."""
    stats = [{kind: _prompt_stats(*rows) for kind, rows in prompt.items()} for prompt in prompts]
    terms: dict[str, float | None] = {
        f"{kind}_accuracy": float(np.mean([s[kind][0] for s in stats if kind in s])) if any(kind in s for s in stats) else 0.0
        for kind in ("ref", "tied")}
    both = [s for s in stats if "ref" in s and "tied" in s]
    if not both:  # the margin terms need a prompt's ref and tied rows both
        return {**terms, "correctness_preferred": None, "correctness_preferred_hard": None,
                "correctness_margin_score": None, "score": None}
    spread = np.array([s["tied"][1] for s in both], dtype=float)
    tied_margin = np.array([s["tied"][2] for s in both], dtype=float)
    hardest = np.minimum(np.array([s["ref"][2] for s in both], dtype=float), tied_margin)
    with np.errstate(divide="ignore", invalid="ignore"):
        margin_scores = np.nan_to_num(np.tanh(hardest / spread - 1), nan=0.0)
    terms.update(correctness_preferred=float(np.mean(tied_margin > spread)),
                 correctness_preferred_hard=float(np.mean(hardest > spread)),
                 correctness_margin_score=float(np.mean(margin_scores)))
    terms["score"] = float(sum(weight * terms[name] for name, weight in TIES_WEIGHTS.items()))
    return terms


class RewardBench2(Benchmark):
    """RewardBench 2: six subsets, best-of-4 (Ties: its own weighted score), overall the mean of the six."""

    name = "rewardbench2"
    label = "RewardBench 2"
    sources = ("reward-bench-2", "allenai/reward-bench-2")
    pairwise = False  # 4 or more responses per prompt: the pointwise judge scores each

    def group(self, pair: PreferencePair) -> str:
        return pair.subset

    def unit(self, pair: PreferencePair) -> str:
        """A Ties prompt's ref and tied rows are scored together, so a limit keeps or drops both."""
        return f"reward-bench-2/ties:{pair.id.rsplit(':', 1)[1]}" if pair.subset == TIES else pair.id

    def requests(self, pairs: Sequence[PreferencePair]) -> list[JudgeRequest]:
        """Every correct and incorrect response on its own (sides chosen_0 .. rejected_2, more for Ties)."""
        return requests_for_style_variants(pairs)

    def score(self, judgments: Sequence[Judgment], groups: Mapping[str, str], rules: Scoring) -> tuple[dict[str, float], dict[str, Any]]:
        """Per-item outcomes (best-of-4; Ties: 1 when accurate) and the subset and overall scores."""
        if rules.pairwise:
            raise EvalError("the pairwise judge is not run on rewardbench2 (4 or more responses per prompt)")
        voted = voted_scores(judgments, rules.voting, rules.votes, rules.readout)
        sides = defaultdict(lambda: defaultdict(list))
        for (pid, side), score in voted.items():
            kind, index = side.rsplit("_", 1)
            sides[pid][kind].append((int(index), score))
        scores = {pid: {kind: [s for _, s in sorted(sides[pid][kind])] for kind in ("chosen", "rejected")} for pid in groups}
        outcomes, by_subset = {}, defaultdict(list)
        for pid, subset in groups.items():
            correct, incorrect = scores[pid]["chosen"], scores[pid]["rejected"]
            if subset == TIES:
                rated = [[UNSCORED_RATING if s is None else s for s in side] for side in (correct, incorrect)]
                outcomes[pid] = float(_prompt_stats(*rated)[0])
            else:
                outcomes[pid] = best_of_4(correct[0], incorrect, rules.ties)
            by_subset[subset].append(pid)
        subsets = {subset: self._subset(subset, pids, scores, outcomes, rules) for subset, pids in sorted(by_subset.items())}
        complete = set(subsets) == set(SUBSETS) and all(s["score"] is not None for s in subsets.values())
        overall = float(np.mean([s["score"] for s in subsets.values()])) if complete else None
        return outcomes, {"acc": overall, "n": len(outcomes), "subsets": subsets, "ci95": {"acc": None},
                          "subsets_missing": sorted(set(SUBSETS) - set(subsets))}

    @staticmethod
    def _subset(subset: str, pids: list[str], scores: dict, outcomes: dict[str, float], rules: Scoring) -> dict[str, Any]:
        """One subset's score with a bootstrap interval (items resampled; Ties rescored on each resample)."""
        if subset == TIES:
            prompts = ties_prompts([(pid.removeprefix("reward-bench-2/"), *([UNSCORED_RATING if s is None else s
                                     for s in scores[pid][k]] for k in ("chosen", "rejected"))) for pid in pids])
            facts = ties_score(prompts)

            def statistic(index: np.ndarray) -> float:  # prompts resampled, each with its ref and tied rows
                score = ties_score([prompts[i] for i in index])["score"]
                return float("nan") if score is None else score

            interval = (list(bootstrap_ci_of(per_resample(statistic), len(prompts), n_boot=rules.n_boot, seed=rules.seed))
                        if facts["score"] is not None else [None, None])
            return {**facts, "n": len(pids), "ci95": interval}
        values = [outcomes[pid] for pid in pids]  # a plain mean: the base class's interval
        return {"score": float(np.mean(values)), "n": len(pids), "ci95": outcome_interval(values, rules.n_boot, rules.seed)}

    def count(self, metrics: Mapping[str, Any]) -> int:
        return metrics["n"]

    def coverage(self, metrics: Mapping[str, Any]) -> str:
        subsets = ", ".join(f"{s} (n={f['n']})" for s, f in metrics["subsets"].items())
        missing = f"; {', '.join(metrics['subsets_missing'])} missing, so no overall score" if metrics["subsets_missing"] else ""
        return f"RewardBench 2: {subsets}{missing}"
