"""Warm-up checks: what PAR will face, measured before it starts.

The base and warmed-up judges are sampled on dev pairs as PAR samples (`sft.checks`): parse
rate, score histograms, pairwise accuracy, the share of all-equal GRPO groups, and for `facts`
targets whether the judge states the response's facts and verdicts right (per instruction type).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from patarm_kit.config.schema import RunConfig
from patarm_kit.data.pairs import PreferencePair
from patarm_kit.evaluation.stats import bootstrap_ci
from patarm_kit.judging.engine import close_shared_engines, cpu_seconds
from patarm_kit.judging.judge import Judgment, judging_summary, requests_for_pairs, voted_scores
from patarm_kit.judging.outcome import pair_outcome
from patarm_kit.judging.prompts import SCORE_RANGE, evaluation_text
from patarm_kit.judging.registry import build_judge
from patarm_kit.runs.files import write_json, write_jsonl
from patarm_kit.runs.run import Run
from patarm_kit.training import facts
from patarm_kit.training.par_reward import SIDES, par_rewards
from patarm_kit.training.sft import stage_pairs, topic_words

# ---------------------------------------------------------------- warm-up checks


def score_histogram(judgments: Iterable[Judgment], side: str) -> dict[int, int]:
    """Counts of each score 1..10 among the valid judgments of one side."""
    counts = Counter(j.score for j in judgments if j.side == side and j.score is not None)
    return {score: counts.get(score, 0) for score in range(SCORE_RANGE[0], SCORE_RANGE[1] + 1)}


def pairwise_accuracy(judgments: Sequence[Judgment], pair_ids: Sequence[str], n_boot: int, seed: int) -> dict[str, Any]:
    """Voted (mean) score of chosen vs rejected per pair: 1 win, 0.5 tie, 0 loss.

    A pair with a side that has no valid judgment is counted as invalid and, as in the
    benchmarks, as a tie (0.5) in the accuracy: it cannot show a preference.
    """
    voted = voted_scores(judgments)
    outcomes, counts = [], Counter()
    for pair_id in pair_ids:
        chosen, rejected = voted[(pair_id, "chosen")], voted[(pair_id, "rejected")]
        outcome = pair_outcome(chosen, rejected)
        counts["invalid" if chosen is None or rejected is None else {1.0: "win", 0.0: "loss"}.get(outcome, "tie")] += 1
        outcomes.append(outcome)
    low, high = bootstrap_ci(outcomes, n_boot=n_boot, seed=seed)
    return {"accuracy": sum(outcomes) / len(outcomes), "ci95": [low, high], "pairs": len(outcomes),
            **{kind: counts[kind] for kind in ("win", "tie", "loss", "invalid")}}


def all_equal_groups(judgments: Sequence[Judgment], pair_ids: Sequence[str], mode: str) -> dict[str, Any]:
    """Share of GRPO groups (the n rollouts of one pair and side) whose PAR rewards are all equal.

    Such a group has zero reward variance, so GRPO learns nothing from it.
    """
    scores = {(p, s): [] for p in pair_ids for s in SIDES}
    for j in judgments:
        scores[(j.pair_id, j.side)].append(j.score)
    groups = equal = 0
    for pair_id in pair_ids:
        for rewards in par_rewards(scores[(pair_id, "chosen")], scores[(pair_id, "rejected")], mode):
            groups += 1
            equal += len(set(rewards)) == 1
    return {"groups": groups, "all_equal": equal, "share": equal / groups}


def facts_report(judgments: Sequence[Judgment], pairs: Sequence[PreferencePair]) -> dict[str, Any]:
    """How much of each response's true facts (training/facts.py) the judgments state: a judge that reads
    the response states them; one that writes a template does not (the first warm-up: 0).
    `verdicts_stated` leaves out the quotes (how it starts or ends): the share of the decisions
    (has walnut: yes) a judge gets right, the facts PAR can turn into a score; `verdicts_by_instruction`
    gives it per instruction type (a pair's ids joined), since a warm-up can read one type and not another."""
    by_id = {p.id: p for p in pairs}
    shares, verdicts = [], []
    by_instruction: dict[str, list[float]] = defaultdict(list)
    for judgment in judgments:
        pair = by_id[judgment.pair_id]
        true_facts = facts.response_facts(getattr(pair, judgment.side), pair.instructions, topic_words(pair.prompt).split())
        evaluation = evaluation_text(judgment.text)
        shares.append(facts.facts_stated(evaluation, true_facts))
        if decisions := [f for f in true_facts if not facts.is_quote(f)]:
            verdicts.append(facts.facts_stated(evaluation, decisions))
            if pair.instructions:
                by_instruction["+".join(sorted(i["instruction_id"] for i in pair.instructions))].append(verdicts[-1])
    return {"facts_stated": sum(shares) / len(shares), "all_facts_stated": sum(s == 1.0 for s in shares) / len(shares),
            "verdicts_stated": sum(verdicts) / len(verdicts) if verdicts else None,
            "verdicts_by_instruction": {kind: {"judgments": len(stated), "verdicts_stated": sum(stated) / len(stated)}
                                        for kind, stated in sorted(by_instruction.items())}}


def score_by_stated_side(judgments: Sequence[Judgment], pairs: Sequence[PreferencePair]) -> dict[str, Any]:
    """Mean score of the judgments that state the chosen side's verdicts and of those that state the
    rejected side's (facts.stated_side), whichever response they judge, and the gap between them.

    The `facts` warm-up's score ignores the facts, so its gap is about 0; PAR has learned "which
    facts deserve the higher score" exactly when the gap grows. It reads what PAR changes more
    directly than pairwise accuracy, which also pays for the verdicts the judge gets wrong."""
    judged = {j.pair_id for j in judgments}
    sides_facts = {p.id: [facts.response_facts(getattr(p, s), p.instructions, topic_words(p.prompt).split()) for s in SIDES]
                   for p in pairs if p.id in judged}  # once per pair, not once per judgment
    scores: dict[str, list[float]] = {"chosen": [], "rejected": []}
    for judgment in judgments:
        side = facts.stated_side(evaluation_text(judgment.text), *sides_facts[judgment.pair_id])
        if side is not None and judgment.score is not None:
            scores[side].append(judgment.score)
    means = {side: sum(v) / len(v) if v else None for side, v in scores.items()}
    gap = means["chosen"] - means["rejected"] if None not in means.values() else None
    return {"n_chosen_facts": len(scores["chosen"]), "n_rejected_facts": len(scores["rejected"]),
            "score_chosen_facts": means["chosen"], "score_rejected_facts": means["rejected"], "score_gap": gap}


def judge_report(judgments: Sequence[Judgment], pairs: Sequence[PreferencePair], config: RunConfig) -> dict[str, Any]:
    """The warm-up numbers of one judge on the held-out pairs: headline scalars first, then details."""
    pair_ids = [p.id for p in pairs]
    summary = judging_summary(judgments)
    pairwise = pairwise_accuracy(judgments, pair_ids, config.eval.n_boot, config.seed)
    groups = all_equal_groups(judgments, pair_ids, config.par.mode)
    return {
        "parse_rate": summary["parse_rate"],
        "all_equal_share": groups["share"],
        "accuracy": pairwise["accuracy"],
        "accuracy_ci95": pairwise["ci95"],
        **facts_report(judgments, pairs),
        "score_gap_by_stated_side": score_by_stated_side(judgments, pairs)["score_gap"],
        "mean_completion_tokens": summary["mean_completion_tokens"],
        "truncated_generation": summary["truncated_generation"],
        "generation_seconds": round(summary["generation_seconds"], 1),
        "invalid_reasons": summary["invalid_reasons"],
        "pairwise": pairwise,
        "groups": groups,
        "score_histogram": {side: score_histogram(judgments, side) for side in SIDES},
    }


def warmup_checks(config: RunConfig, run: Run, adapter_path: str | Path) -> dict[str, Any]:
    """Base judge vs warmed-up judge on held-out (dev) pairs, sampled as `sft.checks` says (as PAR will sample).

    Writes <run>/sft/checks.json and every judgment to <run>/sft/check_judgments.jsonl.
    """
    pairs, origin = stage_pairs(config, run, "dev", config.sft.n_check_pairs, config.seed)
    sampling = config.sft.checks
    checks: dict[str, Any] = {"pairs": len(pairs), "source": run.layout.relative(origin), "adapter": run.layout.relative(adapter_path),
                              "temperature": sampling.temperature, "samples": sampling.n,
                              "max_new_tokens": sampling.max_new_tokens, "judges": {}}
    records = []
    for name, spec in (("base", "base"), ("sft", f"adapter:{adapter_path}")):
        judge = build_judge(spec, config, sampling)
        cpu_started = cpu_seconds()
        judgments = judge.judge(requests_for_pairs(pairs))
        checks["judges"][name] = {**judge_report(judgments, pairs, config),
                                  "cpu_seconds": round(cpu_seconds() - cpu_started, 1),  # the engine's processes too
                                  "engine": judge.engine_settings()}
        records += [{"judge": name, **j.to_row()} for j in judgments]
    close_shared_engines()  # PAR training often follows in this process: it gets the engine's memory and cores
    write_jsonl(run.layout.sft_check_judgments, records)
    write_json(run.layout.sft_checks, checks)
    return checks
