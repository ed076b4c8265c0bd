"""Benchmarks and baselines: every judge through one interface, scored by the benchmarks' own rules.

Judges are named by specs (judging/registry.py: `length`, `random`, `base`, `adapter:PATH`, `pairwise`,
`bt:PATH`, and a run's own `sft`, `par`, `bt`), benchmarks too (benches/: `rmbench`,
`rewardbench`, `pairs:SOURCE`). Nothing here knows a judge or a benchmark by name: it asks them.

Every evaluation writes a metrics JSON and, beside it, the per-item judgments (JSONL), so
`recompute_metrics` (and `patarm-kit verify`) can rebuild every number without the model.

Readouts (config.READOUTS): a metrics file's top-level numbers (`acc`, each item's `outcome`)
are the greedy readout's; each other readout measured has a section of its own (`expected`,
`sampled_mean`, `sampled_expected`) and suffixed fields (`outcome_expected`, `acc_sampled_mean`):
`readout_field`. The judgments the sampled readouts read are stored in the same judgments file,
marked by their `draw` (judge.SAMPLED_MEAN), and their sampling block in the metrics'
`sampled_mean_sampling`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from patarm_kit.config.rules import READOUTS, TIE_VALUES, readout_name
from patarm_kit.config.schema import RunConfig, SamplingConfig
from patarm_kit.evaluation.benches import get_bench
from patarm_kit.evaluation.benches.base import Scoring
from patarm_kit.evaluation.stats import paired_bootstrap_diff
from patarm_kit.judging.judge import (
    SAMPLED_MEAN,
    EvalError,
    Judge,
    Judgment,
    read_judgments,
    readout_score,
    save_judgments,
    voted_scores,
)
from patarm_kit.judging.registry import JudgeSpec, build_judge, parse_judge
from patarm_kit.runs.env import git_commit, package_versions
from patarm_kit.runs.files import read_json, write_json
from patarm_kit.runs.layout import RunLayout
from patarm_kit.runs.run import OutputExistsError, refuse_writing_over

# ---------------------------------------------------------------- metrics from judgments

SECTIONED = tuple(r for r in READOUTS if r != "greedy")  # the readouts with a section of their own in a metrics file


def readout_key(readout: str) -> str:
    """A readout's section in a metrics file and summary rows (`expected`, `sampled_mean`)."""
    return readout_name(readout).replace("-", "_")


def readout_field(field: str, readout: str) -> str:
    """A readout's name for a field of items and table rows: greedy's is the plain one (`outcome`,
    `acc`), as in runs made before the other readouts; the others' carry the readout (`acc_expected`)."""
    return field if readout_name(readout) == "greedy" else f"{field}_{readout_key(readout)}"


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
    samples: Sequence[Judgment] = (),
) -> dict[str, Any]:
    """The benchmark's metrics from per-item judgments: a pure function, so runs can be re-checked.

    Every item must have judgments: an item without any would be scored as a tie, a number
    made from nothing. `samples`: the sampled-mean readout's judgments (Judge.draw), every
    judged response's; a response with no valid sample is invalid under it.
    """
    if not judgments or not groups:
        raise EvalError("no judgments to score")
    if votes is not None and votes < 1:
        raise EvalError(f"votes must be at least 1, not {votes}")
    judged = {j.pair_id for j in judgments}
    unjudged = [pid for pid in groups if pid not in judged]
    if unjudged:
        raise EvalError(f"{len(unjudged)} of {len(groups)} items have no judgments (first: {unjudged[0]})")
    counted = [j for j in judgments if votes is None or j.sample < votes]
    metrics: dict[str, Any] = {"bench": bench, "ties": ties, "votes": votes, "voting": voting,
                               **_validity(counted, "greedy")}
    rules = Scoring(ties, votes, voting, pairwise, n_boot, seed)
    outcomes, scores = get_bench(bench).score(judgments, groups, rules)
    metrics.update(scores)
    metrics["items"] = [{"pair_id": pid, "group": groups[pid], "outcome": outcomes[pid]} for pid in groups]
    if any(j.expected_score is not None for j in counted):  # generative pointwise judges
        _add_readout(metrics, judgments, groups, dataclasses.replace(rules, readout="expected"),
                     {**_validity(counted, "expected"), "forced": sum(j.score_forced for j in counted)})
    if samples:
        drawn = {(j.pair_id, j.side) for j in samples}
        missing = [key for key in dict.fromkeys((j.pair_id, j.side) for j in judgments) if key not in drawn]
        if missing:
            raise EvalError(f"{len(missing)} judged responses have no {SAMPLED_MEAN} samples (first: {missing[0]})")
        read = [SAMPLED_MEAN, *(["sampled-expected"] if any(j.expected_score is not None for j in samples) else [])]
        for readout in read:  # sampled-expected where the samples carry expected scores (runs before it: none)
            means = voted_scores(samples, "mean", readout=readout)
            invalid = sum(mean is None for mean in means.values())
            _add_readout(metrics, samples, groups, Scoring(ties, None, "mean", False, n_boot, seed, readout),
                         {"samples": max(j.sample for j in samples) + 1,
                          "invalid": {"responses": invalid, "of": len(means), "share": invalid / len(means)}})
    return metrics


def _add_readout(metrics: dict[str, Any], judgments: Sequence[Judgment], groups: dict[str, str], rules: Scoring,
                 facts: dict[str, Any]) -> None:
    """A readout's section (the bench's scores under it, and `facts`) and each item's outcome under it."""
    outcomes, scores = get_bench(metrics["bench"]).score(judgments, groups, rules)
    metrics[readout_key(rules.readout)] = {**scores, **facts}
    for item in metrics["items"]:
        item[readout_field("outcome", rules.readout)] = outcomes[item["pair_id"]]


def _validity(counted: Sequence[Judgment], readout: str) -> dict[str, Any]:
    """Judgments without a score under the readout, and inputs the judge saw cut: counted in every metrics file."""
    invalid = sum(1 for j in counted if readout_score(j, readout) is None)
    cut = sum(1 for j in counted if j.input_truncated)
    share = (lambda k: k / len(counted) if counted else None)
    return {"invalid": {"judgments": invalid, "of": len(counted), "share": share(invalid)},
            "inputs_truncated": {"judgments": cut, "of": len(counted), "share": share(cut)}}


def rescore(stored: dict[str, Any], judgments: Sequence[Judgment], ties: str | None = None,
            votes: int | None = None, samples: Sequence[Judgment] = ()) -> dict[str, Any]:
    """A stored evaluation's numbers rebuilt from its judgments and sampled-mean samples (same items,
    voting and bootstrap seed), under its own tie rule and votes unless others are given: verify,
    the summary's other tie rule and the votes curve all score through here."""
    groups = {item["pair_id"]: item["group"] for item in stored["items"]}
    return compute_metrics(stored["bench"], judgments, groups, ties or stored["ties"], votes or stored["votes"],
                           stored["voting"], parse_judge(stored["judge_spec"]).pairwise,
                           stored["config"]["eval"]["n_boot"], stored["config"]["seed"], samples)


METRICS_KEYS = ("judge", "bench", "acc", "ci95", "items", "judgments_file")  # what every evaluation writes


def read_eval_metrics(path: Path) -> dict[str, Any]:
    """An evaluation's metrics file, checked for its shape: a damaged or foreign file is an EvalError naming it."""
    metrics = read_json(path)
    missing = [key for key in METRICS_KEYS if key not in metrics] if isinstance(metrics, dict) else list(METRICS_KEYS)
    if missing:
        raise EvalError(f"{path}: not an evaluation's metrics file (no {', '.join(missing)}); was it changed by hand?")
    return metrics


def stored_judgments(folder: Path, stored: dict[str, Any]) -> tuple[list[Judgment], list[Judgment]]:
    """The judgments of a metrics file in `folder`, and the sampled-mean samples in the same file (maybe none)."""
    path = Path(folder) / stored["judgments_file"]
    return read_judgments(path), read_judgments(path, SAMPLED_MEAN)


def recompute_metrics(metrics_file: Path) -> dict[str, Any]:
    """Rebuild a metrics file's numbers from its stored judgments (no model)."""
    stored = read_json(metrics_file)
    judgments, samples = stored_judgments(Path(metrics_file).parent, stored)
    return rescore(stored, judgments, samples=samples)


# ---------------------------------------------------------------- one evaluation, end to end


def _sampling(spec: JudgeSpec, block: SamplingConfig, votes: int | None) -> SamplingConfig:
    """The block a judge samples with: `votes` sets its n (judges that make one judgment per response keep 1)."""
    if votes is not None and votes < 1:
        raise EvalError(f"votes must be at least 1, not {votes}")
    if not spec.samples:
        if votes not in (None, 1):
            raise EvalError(f"judge {spec.label} makes one judgment per response; votes apply to base and adapter judges")
        return dataclasses.replace(block, n=1)
    if votes is not None:
        block = dataclasses.replace(block, n=votes)
        block.check(f"eval.sampling with votes={votes}")
    return block


def evaluation_sampling(config: RunConfig, spec: JudgeSpec) -> SamplingConfig:
    """The block a judge evaluates with: eval.pairwise_sampling for the pairwise judge where set, else eval.sampling."""
    return config.eval.pairwise_sampling if spec.pairwise and config.eval.pairwise_sampling else config.eval.sampling


def evaluate(config: RunConfig, judge: str | JudgeSpec, bench: str, out: Path, limit: int | None = None,
             ties: str | None = None, votes: int | None = None, label: str | None = None,
             sampling: SamplingConfig | None = None, force: bool = False, layout: RunLayout | None = None) -> dict[str, Any]:
    """Judge a benchmark's items, write the metrics JSON and the per-item judgments beside it.

    An existing metrics or judgments file is refused before anything runs unless `force`.

    `judge` is a spec, or a JudgeSpec parsed with the run's layout (`parse_judge("par", layout)`),
    which records the run's own models as `<run>/...`. Generative judges sample as `sampling`
    says (default: eval.sampling), with n = `votes` when given; pointwise ones also draw the
    sampled-mean readout's judgments where eval.sampled_mean is set. `label` names the judge in
    tables. Inside a run (`layout`) the pairs are the ones stage 01 wrote for the bench. Every
    setting is checked before the model loads; nothing is written when one is wrong.
    """
    judgments_file = RunLayout.judgments_of(out)
    for path in (Path(out), judgments_file):
        if path.is_dir():
            raise EvalError(f"--out {out}: {path} is a folder; give the metrics file's path (e.g. {path / 'metrics.json'})")
        if path.exists() and not force:
            raise OutputExistsError(f"{path} already exists; pass --force to replace it, or choose another --out")
    spec = parse_judge(judge) if isinstance(judge, str) else judge
    benchmark = get_bench(bench)
    ties = ties or config.eval.ties
    if ties not in TIE_VALUES:
        raise EvalError(f"ties must be one of {', '.join(TIE_VALUES)}, not {ties!r}")
    if spec.pairwise and not benchmark.pairwise:
        raise EvalError(f"the pairwise judge is not run on {bench}")
    block = _sampling(spec, sampling or evaluation_sampling(config, spec), votes)
    draws = config.eval.sampled_mean if spec.samples else None  # base and adapter judges
    items = benchmark.load(config, limit, layout)
    refuse_writing_over([out, judgments_file], [*items.paths, *([Path(spec.path)] if spec.path else [])])
    scorer = build_judge(spec, config, block)
    samples: list[Judgment] = []
    if spec.pairwise:
        judgments = scorer.judge_pairwise(items.pairs)
    else:
        requests = benchmark.requests(items.pairs)
        judgments = scorer.judge(requests)
        if draws is not None:
            samples = scorer.draw(requests, draws)
    metrics = compute_metrics(bench, judgments, items.groups, ties, block.n, config.judge.voting, spec.pairwise,
                              config.eval.n_boot, config.seed, samples)
    if draws is not None:
        metrics["sampled_mean_sampling"] = dataclasses.asdict(draws)
    metrics.update(
        judge=label or spec.label, judge_spec=spec.recorded, limit=limit, data_files=items.files, config=config.to_dict(),
        config_fingerprint=config.fingerprint(), packages=package_versions(), git=git_commit(),
        judgments_file=judgments_file.name,
    )  # no times in here: two runs of the same config on the same machine give identical files
    if isinstance(scorer, Judge):
        metrics["engine"] = scorer.engine_settings()  # which engine generated the judgments, and how
    save_judgments([*judgments, *samples], judgments_file)
    write_json(out, metrics)
    return metrics


# ---------------------------------------------------------------- the benchmark stage (notebook 04)


def suite_plan(config: RunConfig, layout: RunLayout) -> list[tuple[str, str, Path]]:
    """(judge, bench, metrics file) for every judge of the profile on every bench it runs on.

    The pairwise judge is not run on RM-Bench: 9 comparisons in 2 orders per prompt instead of
    6 pointwise judgments, which the CPU budget does not allow (`Benchmark.pairwise`).
    """
    plan = []
    for bench in config.eval.benches:
        runs_pairwise = get_bench(bench).pairwise
        for judge in config.eval.judges:
            if parse_judge(judge, layout).pairwise and not runs_pairwise:
                continue
            plan.append((judge, bench, layout.eval_metrics(judge, bench)))
    return plan


def run_suite(config: RunConfig, layout: RunLayout, keep_finished: bool = False) -> list[dict[str, Any]]:
    """Every judge of the profile on every benchmark of the profile, into the run's eval files.

    The run's own judges (sft, par, bt) must exist before the first judgment is made. Each judge
    goes through every bench before the next judge starts, so the shared engine merges and reloads
    an adapter once per judge, not once per bench; the results come back in `suite_plan`'s order.
    `keep_finished` (resume): an evaluation whose metrics file exists is read back, not judged again.
    """
    plan = suite_plan(config, layout)
    specs = {judge: parse_judge(judge, layout) for judge in config.eval.judges}
    for spec in specs.values():
        spec.check_files()
    results: dict[Path, dict[str, Any]] = {}
    for judge, bench, out in sorted(plan, key=lambda step: config.eval.judges.index(step[0])):  # stable: benches in order
        if keep_finished and out.is_file():
            print(f"[eval] {judge} on {bench}: finished before, read back (--resume)", flush=True)
            results[out] = read_json(out)
            continue
        print(f"[eval] {judge} on {bench}", flush=True)
        results[out] = evaluate(config, specs[judge], bench, out, config.eval.limit_for(bench), force=keep_finished,
                                layout=layout)
    return [results[out] for *_, out in plan]


def votes_curve_file(config: RunConfig, layout: RunLayout) -> Path | None:
    """The metrics file of the votes curve's one sampled evaluation (None: no curve in this profile)."""
    if not config.eval.votes_curve:
        return None
    return layout.eval_metrics(f"{config.eval.votes_curve_judge}-votes{config.eval.votes_curve_sampling.n}",
                               config.eval.votes_curve_bench)


def votes_curve(config: RunConfig, layout: RunLayout, keep_finished: bool = False) -> list[dict[str, Any]]:
    """Accuracy against the number of votes: n sampled judgments once (eval.votes_curve_sampling),
    scored with the first k for each k of eval.votes_curve (`keep_finished`: as run_suite)."""
    out = votes_curve_file(config, layout)
    if out is None:
        return []
    judge, bench, sampling = config.eval.votes_curve_judge, config.eval.votes_curve_bench, config.eval.votes_curve_sampling
    limit = config.eval.votes_curve_limit or config.eval.limit_for(bench)
    if keep_finished and out.is_file():
        stored = read_json(out)
    else:
        stored = evaluate(config, parse_judge(judge, layout), bench, out, limit, label=judge, sampling=sampling,
                          force=keep_finished, layout=layout)
    judgments = read_judgments(RunLayout.judgments_of(out))
    return [votes_point(stored, judgments, k) for k in sorted(config.eval.votes_curve)]


def votes_point(stored: dict[str, Any], judgments: Sequence[Judgment], votes: int) -> dict[str, Any]:
    """One point of the votes curve: a stored evaluation rescored with the first `votes` samples per response."""
    metrics = rescore(stored, judgments, votes=votes)
    low, high = metrics["ci95"]["acc"]
    return {"judge": stored["judge"], "bench": stored["bench"], "votes": votes, "acc": metrics["acc"],
            "ci95_low": low, "ci95_high": high, "invalid_share": metrics["invalid"]["share"]}


# ---------------------------------------------------------------- comparing judges


def paired_difference(metrics_a: dict[str, Any], metrics_b: dict[str, Any], n_boot: int = 1000, seed: int = 0,
                      readout: str = "greedy") -> dict[str, Any]:
    """Accuracy of judge A minus judge B on the items both judged, with a paired bootstrap interval."""
    readout = readout_name(readout)
    key = readout_field("outcome", readout)
    a = {item["pair_id"]: item[key] for item in metrics_a["items"]}
    b = {item["pair_id"]: item[key] for item in metrics_b["items"]}
    common = sorted(a.keys() & b.keys())
    if not common:
        raise EvalError(f"{metrics_a['judge']} and {metrics_b['judge']} share no judged items")
    result = paired_bootstrap_diff([a[k] for k in common], [b[k] for k in common], n_boot=n_boot, seed=seed)
    row = {"a": metrics_a["judge"], "b": metrics_b["judge"], "bench": metrics_a["bench"], "n": len(common), **result}
    return row if readout == "greedy" else {**row, "readout": readout}  # rows without the key are greedy (as in older runs)


def summary_row(metrics: dict[str, Any]) -> dict[str, Any]:
    """One table row per (judge, bench): accuracy with its interval, the invalid share, and the bench's own columns."""
    benchmark = get_bench(metrics["bench"])
    low, high = metrics["ci95"]["acc"] or (None, None)
    row = {"judge": metrics["judge"], "bench": metrics["bench"], "n": benchmark.count(metrics), "acc": metrics["acc"],
           "ci95_low": low, "ci95_high": high, "invalid_share": metrics["invalid"]["share"], **benchmark.table_extras(metrics)}
    for readout in SECTIONED:  # where measured (generative pointwise judges), beside the greedy readout
        if (section := metrics.get(readout_key(readout))) is not None:
            low, high = section["ci95"]["acc"] or (None, None)
            row.update({readout_field("acc", readout): section["acc"], readout_field("ci95_low", readout): low,
                        readout_field("ci95_high", readout): high})
    return row


def paired_differences(results: Sequence[dict[str, Any]], comparisons: Sequence[Sequence[str]], n_boot: int, seed: int) -> list[dict[str, Any]]:
    """A - B with paired intervals, for every configured comparison on every bench both judges ran,
    under the greedy readout and each other readout both judges were measured by."""
    by_key = {(m["judge"], m["bench"]): m for m in results}
    rows = []
    for a, b in comparisons:
        for bench in dict.fromkeys(m["bench"] for m in results):
            if (a, bench) in by_key and (b, bench) in by_key:
                pair = (by_key[(a, bench)], by_key[(b, bench)])
                rows += [paired_difference(*pair, n_boot, seed, readout) for readout in READOUTS
                         if readout == "greedy" or all(readout_key(readout) in m for m in pair)]
    return rows


def write_benchmarks_summary(config: RunConfig, layout: RunLayout, results: list[dict[str, Any]],
                             curve: list[dict[str, Any]]) -> dict[str, Any]:
    """metrics/04_benchmarks.json: the comparison table, paired differences and votes curve (verify rebuilds it)."""
    summary = {
        "table": [summary_row(m) for m in results],
        "paired": paired_differences(results, config.eval.paired, config.eval.n_boot, config.seed),
        "votes_curve": curve,
    }
    write_json(layout.benchmarks_summary, summary)
    return summary


def format_metrics(metrics: dict[str, Any]) -> str:
    """A short human summary of a metrics file (the JSON holds everything)."""
    def pct(value, interval=None) -> str:
        if value is None:
            return "n/a"
        text = f"{100 * value:.1f}"
        return text + (f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]" if interval and interval[0] is not None else "")

    lines = [f"{metrics['judge']} on {metrics['bench']} (ties={metrics['ties']}, votes={metrics['votes']}): "
             f"accuracy {pct(metrics['acc'], metrics['ci95']['acc'])}; invalid judgments "
             f"{metrics['invalid']['judgments']}/{metrics['invalid']['of']}"]
    for domain, facts in metrics.get("domains", {}).items():
        ci = facts.get("ci95", {})
        lines.append(f"  {domain:8s} n={facts['n']:4d} easy {pct(facts['easy'], ci.get('easy'))}  normal "
                     f"{pct(facts['normal'], ci.get('normal'))}  hard {pct(facts['hard'], ci.get('hard'))}  avg {pct(facts['avg'], ci.get('avg'))}")
    for subset, facts in metrics.get("subsets", {}).items():
        score = facts["acc"] if "acc" in facts else facts["score"]  # RewardBench 2's Ties is a weighted score
        lines.append(f"  {subset:24s} n={facts['n']:4d} {'acc' if 'acc' in facts else 'score'} {pct(score, facts.get('ci95'))}")
    for section, facts in metrics.get("sections", {}).items():
        if facts["score"] is not None:
            state = "complete" if facts["complete"] else f"partial, missing {len(facts['missing'])} subsets"
            lines.append(f"  section {section}: {pct(facts['score'], facts.get('ci95'))} ({state})")
    if "sections" in metrics:
        lines.append(f"  RewardBench score: {pct(metrics['score'])}" + ("" if metrics["score"] is not None else " (not all four sections complete)"))
    return "\n".join(lines)
