"""Benchmarks and baselines: every judge through one interface, scored by the benchmarks' own rules.

A *judge spec* names a judge: `length` (score = characters of the response, the classic
length-bias probe), `random` (seeded), `base` (the profile's model, pointwise, untrained),
`adapter:PATH` (a LoRA adapter on the base: SFT warm-up or PAR-trained), `pairwise` (the
base model with the pairwise template, both orders), `bt:PATH` (a scalar Bradley-Terry RM).

A *bench spec* names the items: `rmbench` (6 responses per prompt, 3x3 style matrix),
`rewardbench` (LLMBar's 5 Chat Hard subsets here, the full set from the hub), or
`pairs:SOURCE` (held-out test split of a training source, or every pair of a file / hub id).

Every evaluation writes a metrics JSON and, beside it, the per-item judgments (JSONL), so
`recompute_metrics` (and `patarm-kit verify`) can rebuild every number without the model.
"""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .bench import rewardbench, rmbench
from .config import RunConfig, SourceConfig
from .data import PreferencePair, load_source, split_of, subsample
from .judge import PAIRWISE_ORDERS, Judge, Judgment, JudgeRequest, read_judgments, requests_for_pairs, requests_for_style_variants, save_judgments, voted_scores
from .results import git_commit, package_versions, read_json, within_run, write_json
from .stats import bootstrap_ci, bootstrap_ci_of



class EvalError(ValueError):
    """A judge or bench spec is wrong; the message lists what is accepted."""


# ---------------------------------------------------------------- items to judge


@dataclasses.dataclass
class BenchItems:
    """The pairs of one benchmark, and the group (domain or subset) each pair is scored in."""

    bench: str
    pairs: list[PreferencePair]
    groups: dict[str, str]
    files: dict[str, str]


def load_bench(bench: str, config: RunConfig, limit: int | None) -> BenchItems:
    """The benchmark's pairs; `limit` keeps that many per domain/subset (a deterministic mix)."""
    data_dir = config.data.data_dir
    if bench == "rmbench":
        source = next((s.name for s in config.data.sources if s.name in ("rm-bench", "THU-KEG/RM-Bench")), "rm-bench")
        pairs, report = load_source(SourceConfig(source, role="bench"), data_dir)
        group_of = {p.id: rmbench.domain_of(p.subset) for p in pairs}
    elif bench == "rewardbench":
        source = next((s.name for s in config.data.sources if s.name in ("llmbar", "allenai/reward-bench")), "llmbar")
        pairs, report = load_source(SourceConfig(source, role="bench"), data_dir)
        group_of = {p.id: rewardbench.LLMBAR_FILES_TO_SUBSETS.get(p.subset, p.subset) for p in pairs}
    elif bench.startswith("pairs:"):
        name = bench.removeprefix("pairs:")
        spec = next((s for s in config.data.sources if s.name == name), SourceConfig(name))
        pairs, report = load_source(dataclasses.replace(spec, limit=None), data_dir)
        if spec.role == "train":  # a training source: only its held-out test split
            pairs = [p for p in pairs if split_of(p, config.data.split_fractions) == "test"]
        group_of = {p.id: p.source for p in pairs}
    else:
        raise EvalError(f"bench {bench!r}: expected rmbench, rewardbench or pairs:SOURCE")
    if limit is not None:
        if limit < 1:
            raise EvalError(f"limit must be at least 1, not {limit}")
        by_group: dict[str, list[PreferencePair]] = defaultdict(list)
        for pair in pairs:
            by_group[group_of[pair.id]].append(pair)
        pairs = [p for group in sorted(by_group) for p in subsample(by_group[group], limit)]
    return BenchItems(bench, pairs, {p.id: group_of[p.id] for p in pairs}, report.files)


def requests_for(items: BenchItems) -> list[JudgeRequest]:
    return requests_for_style_variants(items.pairs) if items.bench == "rmbench" else requests_for_pairs(items.pairs)


# ---------------------------------------------------------------- judges


def _plain_judgment(request: JudgeRequest, score: float) -> Judgment:
    """A record for judges that produce a number without text (length, random, bt)."""
    return Judgment(request.pair_id, request.side, request.task, 0, "", score, None, [], 0, 0, False)


def eval_judge_config(config: RunConfig, votes: int) -> Any:
    """Generation settings for evaluation: eval.temperature (0 = greedy) and one sample per vote."""
    temperature = config.eval.temperature if votes == 1 else config.eval.vote_temperature
    return dataclasses.replace(
        config.judge, n_samples=votes, temperature=temperature, max_new_tokens=config.eval.max_new_tokens
    )


def _generative_judge(config: RunConfig, votes: int, adapter: str | None) -> Judge:
    from .models import load_model
    from .rubrics import load_rubrics

    model, tokenizer = load_model(config.model, adapter=adapter)
    judge_config = eval_judge_config(config, votes)
    return Judge.from_model(model, tokenizer, judge_config, load_rubrics(config.judge.rubric_file), config.model.enable_thinking, config.seed)


def run_judge(spec: str, requests: Sequence[JudgeRequest], config: RunConfig, votes: int = 1) -> list[Judgment]:
    """Judgments of every request by the judge named `spec` (pointwise judges only)."""
    if spec == "length":
        return [_plain_judgment(r, float(len(r.response))) for r in requests]
    if spec == "random":
        rng = random.Random(config.seed)
        return [_plain_judgment(r, rng.random()) for r in requests]
    if spec == "base":
        return _generative_judge(config, votes, None).judge(requests)
    if spec.startswith("adapter:"):
        return _generative_judge(config, votes, spec.removeprefix("adapter:")).judge(requests)
    if spec.startswith("bt:"):
        from .bt import BTScorer

        scores = BTScorer(spec.removeprefix("bt:"), config).score(requests)
        return [_plain_judgment(r, s) for r, s in zip(requests, scores)]
    raise EvalError(f"judge {spec!r}: expected length, random, base, adapter:PATH, pairwise or bt:PATH")


# ---------------------------------------------------------------- metrics from judgments


def _outcome_interval(outcomes: Sequence[float], n_boot: int, seed: int) -> list[float]:
    return list(bootstrap_ci(outcomes, n_boot=n_boot, seed=seed)) if len(outcomes) else [None, None]


def _pair_outcomes(judgments: Sequence[Judgment], pair_ids: Sequence[str], ties: str, votes: int | None, voting: str, pairwise: bool) -> dict[str, float]:
    """Per-pair outcome in [0, 1]: 1 correct, 0 wrong, the tie value for equal or invalid."""
    tie = rewardbench.tie_value(ties)
    voted = voted_scores(judgments, voting, votes)
    if pairwise:
        return {
            pid: float(np.mean([tie if voted.get((pid, o)) is None else voted[(pid, o)] for o in PAIRWISE_ORDERS]))
            for pid in pair_ids
        }
    return {pid: rewardbench.pair_outcome(voted.get((pid, "chosen")), voted.get((pid, "rejected")), ties) for pid in pair_ids}


def compute_metrics(
    bench: str,
    judgments: Sequence[Judgment],
    groups: dict[str, str],
    ties: str,
    votes: int | None = None,
    voting: str = "mean",
    pairwise: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The benchmark's metrics from per-item judgments: a pure function, so runs can be re-checked."""
    pair_ids = list(groups)
    invalid = sum(1 for j in judgments if (votes is None or j.sample < votes) and j.score is None)
    counted = sum(1 for j in judgments if votes is None or j.sample < votes)
    metrics: dict[str, Any] = {"bench": bench, "ties": ties, "votes": votes, "voting": voting,
                               "invalid": {"judgments": invalid, "of": counted, "share": invalid / counted if counted else None}}
    if bench == "rmbench":
        if pairwise:
            raise EvalError("the pairwise judge is not run on rmbench (9 comparisons x 2 orders per prompt)")
        voted = voted_scores(judgments, voting, votes)
        items = []
        for pid in pair_ids:
            scores = {side: [voted.get((pid, f"{side}_{i}")) for i in range(3)] for side in ("chosen", "rejected")}
            items.append({"domain": groups[pid], "chosen_scores": scores["chosen"], "rejected_scores": scores["rejected"]})
        result = rmbench.score_rmbench(items, ties=ties, n_boot=n_boot, seed=seed)
        metrics.update(domains=result["domains"], overall=result["overall"], domains_missing=result["domains_missing"])
        cube = rmbench._outcome_cube([i["chosen_scores"] for i in items], [i["rejected_scores"] for i in items], ties)
        outcomes = dict(zip(pair_ids, cube.reshape(len(items), 9).mean(axis=1).tolist()))
        metrics["acc"] = result["overall"]["avg"]
        metrics["ci95"] = {"acc": result["overall"].get("ci95", {}).get("avg")}
    else:
        outcomes = _pair_outcomes(judgments, pair_ids, ties, votes, voting, pairwise)
        metrics["acc"] = float(np.mean(list(outcomes.values())))
        metrics["n"] = len(outcomes)
        metrics["ci95"] = {"acc": _outcome_interval(list(outcomes.values()), n_boot, seed)}
        if bench == "rewardbench":
            by_subset: dict[str, list[float]] = defaultdict(list)
            for pid, outcome in outcomes.items():
                by_subset[groups[pid]].append(outcome)
            scored = rewardbench.score_rewardbench({s: (float(np.mean(v)), len(v)) for s, v in by_subset.items()})
            for subset, values in by_subset.items():
                scored["subsets"][subset]["ci95"] = _outcome_interval(values, n_boot, seed)
            _section_intervals(scored, by_subset, n_boot, seed)
            metrics.update(subsets=scored["subsets"], sections=scored["sections"], score=scored["score"])
    metrics["items"] = [{"pair_id": pid, "group": groups[pid], "outcome": outcomes[pid]} for pid in pair_ids]
    return metrics


def _section_intervals(scored: dict, by_subset: dict[str, list[float]], n_boot: int, seed: int) -> None:
    """A bootstrap interval for each section score, resampling prompts within each subset."""
    for section, facts in scored["sections"].items():
        present = [s for s in rewardbench.SUBSET_MAPPING[section] if s in by_subset]
        if not present or facts["score"] is None:
            continue
        values = np.concatenate([by_subset[s] for s in present])
        strata = np.concatenate([[s] * len(by_subset[s]) for s in present])
        weights = {s: rewardbench.EXAMPLE_COUNTS[s] for s in present}

        def section_score(index: np.ndarray) -> float:
            picked, picked_strata = values[index], strata[index]
            return sum(weights[s] * picked[picked_strata == s].mean() for s in present) / sum(weights.values())

        facts["ci95"] = list(bootstrap_ci_of(section_score, len(values), n_boot=n_boot, seed=seed, strata=strata))


# ---------------------------------------------------------------- one evaluation, end to end


def judgments_path(out: Path) -> Path:
    return Path(out).with_suffix(".judgments.jsonl")


def evaluate(config: RunConfig, judge: str, bench: str, out: Path, limit: int | None = None,
             ties: str | None = None, votes: int | None = None, label: str | None = None) -> dict[str, Any]:
    """Judge a benchmark's items, write the metrics JSON and the per-item judgments beside it.

    `label` names the judge in tables (e.g. "par" for adapter:<run>/par/adapter).
    """
    ties = ties or config.eval.ties
    votes = votes or config.eval.votes
    items = load_bench(bench, config, limit)
    pairwise = judge == "pairwise"
    if pairwise:
        judgments = _generative_judge(config, 1, None).judge_pairwise(items.pairs)
    else:
        judgments = run_judge(judge, requests_for(items), config, votes)
    metrics = compute_metrics(bench, judgments, items.groups, ties, votes, config.judge.voting, pairwise,
                              config.eval.n_boot, config.seed)
    metrics.update(
        judge=label or judge, judge_spec=recorded_spec(judge, out), limit=limit, data_files=items.files, config=config.to_dict(),
        config_fingerprint=config.fingerprint(), packages=package_versions(), git=git_commit(),
        judgments_file=judgments_path(out).name,
    )  # no times in here: two runs of the same config on the same machine give identical files
    save_judgments(judgments, judgments_path(out))
    write_json(out, metrics)
    return metrics


def recorded_spec(spec: str, out: Path) -> str:
    """The judge spec as a metrics file records it: a model inside the run is `<run>/...`."""
    kind, sep, path = spec.partition(":")
    return f"{kind}:{within_run(path, Path(out).parent.parent)}" if sep else spec


def recompute_metrics(metrics_file: Path) -> dict[str, Any]:
    """Rebuild a metrics file's numbers from its stored judgments (no model)."""
    stored = read_json(metrics_file)
    judgments = read_judgments(Path(metrics_file).parent / stored["judgments_file"])
    groups = {item["pair_id"]: item["group"] for item in stored["items"]}
    return compute_metrics(stored["bench"], judgments, groups, stored["ties"], stored["votes"], stored["voting"],
                           stored["judge_spec"] == "pairwise", stored["config"]["eval"]["n_boot"], stored["config"]["seed"])


# ---------------------------------------------------------------- comparing judges


JUDGE_ALIASES = {"sft": "adapter:{run}/sft/adapter", "par": "adapter:{run}/par/adapter", "bt": "bt:{run}/bt/adapter"}


def resolve_judge(spec: str, run_dir: Path) -> str:
    """Profile shorthands for the run's own models: sft, par and bt name adapters in the run folder."""
    return JUDGE_ALIASES[spec].format(run=run_dir) if spec in JUDGE_ALIASES else spec


def paired_difference(metrics_a: dict[str, Any], metrics_b: dict[str, Any], n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Accuracy of judge A minus judge B on the items both judged, with a paired bootstrap interval."""
    from .stats import paired_bootstrap_diff

    a = {item["pair_id"]: item["outcome"] for item in metrics_a["items"]}
    b = {item["pair_id"]: item["outcome"] for item in metrics_b["items"]}
    common = sorted(a.keys() & b.keys())
    if not common:
        raise EvalError(f"{metrics_a['judge']} and {metrics_b['judge']} share no judged items")
    result = paired_bootstrap_diff([a[k] for k in common], [b[k] for k in common], n_boot=n_boot, seed=seed)
    return {"a": metrics_a["judge"], "b": metrics_b["judge"], "bench": metrics_a["bench"], "n": len(common), **result}


def summary_row(metrics: dict[str, Any]) -> dict[str, Any]:
    """One table row per (judge, bench): accuracy with its interval and the invalid share."""
    low, high = metrics["ci95"]["acc"] or (None, None)
    row = {"judge": metrics["judge"], "bench": metrics["bench"], "n": metrics.get("n") or sum(d["n"] for d in metrics.get("domains", {}).values()),
           "acc": metrics["acc"], "ci95_low": low, "ci95_high": high, "invalid_share": metrics["invalid"]["share"]}
    if metrics["bench"] == "rmbench":
        row.update({f"rm_{k}": metrics["overall"][k] for k in ("easy", "normal", "hard")})
    return row


# ---------------------------------------------------------------- the benchmark stage (notebook 04)


def metrics_file(out_dir: Path, judge: str, bench: str) -> Path:
    """results/<run>/eval/<judge>__<bench>.json, with file-safe names (aliases, not adapter paths)."""
    safe = lambda text: text.replace(":", "-").replace("/", "_")  # noqa: E731
    return Path(out_dir) / f"{safe(judge)}__{safe(bench)}.json"


def run_suite(config: RunConfig, run_dir: Path) -> list[dict[str, Any]]:
    """Every judge of the profile on every benchmark of the profile, into <run>/eval/.

    The pairwise judge is not run on RM-Bench: it would need 9 comparisons in 2 orders per
    prompt instead of 6 pointwise judgments, which the CPU budget does not allow.
    """
    results = []
    for bench in config.eval.benches:
        for judge in config.eval.judges:
            if judge == "pairwise" and bench == "rmbench":
                continue
            spec = resolve_judge(judge, run_dir)
            if ":" in spec and not Path(spec.split(":", 1)[1]).exists():
                raise EvalError(f"judge {judge}: {spec.split(':', 1)[1]} does not exist; run the training stage first")
            print(f"[eval] {judge} on {bench}", flush=True)
            out = metrics_file(Path(run_dir) / "eval", judge, bench)
            results.append(evaluate(config, spec, bench, out, config.eval.limit_for(bench), label=judge))
    return results


def votes_curve(config: RunConfig, judge: str, bench: str, run_dir: Path) -> list[dict[str, Any]]:
    """Accuracy against the number of votes: max(k) sampled judgments once, scored with the first k."""
    ks = sorted(config.eval.votes_curve)
    if not ks:
        return []
    out = metrics_file(Path(run_dir) / "eval", f"{judge}-votes{ks[-1]}", bench)
    limit = config.eval.votes_curve_limit or config.eval.limit_for(bench)
    stored = evaluate(config, resolve_judge(judge, run_dir), bench, out, limit, votes=ks[-1], label=judge)
    judgments = read_judgments(judgments_path(out))
    return [votes_point(stored, judgments, k) for k in ks]


def votes_point(stored: dict[str, Any], judgments: Sequence[Judgment], votes: int) -> dict[str, Any]:
    """One point of the votes curve: a stored evaluation rescored with the first `votes` samples per response."""
    groups = {item["pair_id"]: item["group"] for item in stored["items"]}
    metrics = compute_metrics(stored["bench"], judgments, groups, stored["ties"], votes, stored["voting"],
                              n_boot=stored["config"]["eval"]["n_boot"], seed=stored["config"]["seed"])
    low, high = metrics["ci95"]["acc"]
    return {"judge": stored["judge"], "bench": stored["bench"], "votes": votes, "acc": metrics["acc"],
            "ci95_low": low, "ci95_high": high, "invalid_share": metrics["invalid"]["share"]}


def paired_differences(results: Sequence[dict[str, Any]], comparisons: Sequence[Sequence[str]], n_boot: int, seed: int) -> list[dict[str, Any]]:
    """A - B with paired intervals, for every configured comparison on every bench both judges ran."""
    by_key = {(m["judge"], m["bench"]): m for m in results}
    rows = []
    for a, b in comparisons:
        for bench in dict.fromkeys(m["bench"] for m in results):
            if (a, bench) in by_key and (b, bench) in by_key:
                rows.append(paired_difference(by_key[(a, bench)], by_key[(b, bench)], n_boot, seed))
    return rows
