"""Benchmarks and baselines: every judge through one interface, scored by the benchmarks' own rules.

Judges are named by specs (judges.py: `length`, `random`, `base`, `adapter:PATH`, `pairwise`,
`bt:PATH`, and a run's own `sft`, `par`, `bt`), benchmarks too (bench/: `rmbench`,
`rewardbench`, `pairs:SOURCE`). Nothing here knows a judge or a benchmark by name: it asks them.

Every evaluation writes a metrics JSON and, beside it, the per-item judgments (JSONL), so
`recompute_metrics` (and `patarm-kit verify`) can rebuild every number without the model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .bench import EvalError, Scoring, get_bench
from .config import TIE_VALUES, RunConfig, SamplingConfig
from .judge import Judge, Judgment, read_judgments, readout_score, save_judgments
from .judges import JudgeSpec, build_judge, parse_judge
from .layout import RunLayout
from .models import ADAPTER_WEIGHTS
from .results import OutputExistsError, git_commit, package_versions, read_json, write_json
from .stats import paired_bootstrap_diff

# ---------------------------------------------------------------- metrics from judgments


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
    """The benchmark's metrics from per-item judgments: a pure function, so runs can be re-checked.

    Every item must have judgments: an item without any would be scored as a tie, a number
    made from nothing.
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
                               **_validity(counted, "sampled")}
    rules = Scoring(ties, votes, voting, pairwise, n_boot, seed)
    outcomes, scores = get_bench(bench).score(judgments, groups, rules)
    metrics.update(scores)
    metrics["items"] = [{"pair_id": pid, "group": groups[pid], "outcome": outcomes[pid]} for pid in groups]
    if any(j.expected_score is not None for j in counted):  # generative pointwise judges: the second readout
        outcomes, scores = get_bench(bench).score(judgments, groups, dataclasses.replace(rules, readout="expected"))
        metrics["expected"] = {**scores, **_validity(counted, "expected"),
                               "forced": sum(j.score_forced for j in counted)}
        for item in metrics["items"]:
            item["outcome_expected"] = outcomes[item["pair_id"]]
    return metrics


def _validity(counted: Sequence[Judgment], readout: str) -> dict[str, Any]:
    """Judgments without a score under the readout, and inputs the judge saw cut: counted in every metrics file."""
    invalid = sum(1 for j in counted if readout_score(j, readout) is None)
    cut = sum(1 for j in counted if j.input_truncated)
    share = (lambda k: k / len(counted) if counted else None)
    return {"invalid": {"judgments": invalid, "of": len(counted), "share": share(invalid)},
            "inputs_truncated": {"judgments": cut, "of": len(counted), "share": share(cut)}}


def rescore(stored: dict[str, Any], judgments: Sequence[Judgment], ties: str | None = None,
            votes: int | None = None) -> dict[str, Any]:
    """A stored evaluation's numbers rebuilt from its judgments (same items, voting and bootstrap
    seed), under its own tie rule and votes unless others are given: verify, the summary's
    other tie rule and the votes curve all score through here."""
    groups = {item["pair_id"]: item["group"] for item in stored["items"]}
    return compute_metrics(stored["bench"], judgments, groups, ties or stored["ties"], votes or stored["votes"],
                           stored["voting"], parse_judge(stored["judge_spec"]).pairwise,
                           stored["config"]["eval"]["n_boot"], stored["config"]["seed"])


def recompute_metrics(metrics_file: Path) -> dict[str, Any]:
    """Rebuild a metrics file's numbers from its stored judgments (no model)."""
    stored = read_json(metrics_file)
    return rescore(stored, read_judgments(Path(metrics_file).parent / stored["judgments_file"]))


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
             sampling: SamplingConfig | None = None, force: bool = False) -> dict[str, Any]:
    """Judge a benchmark's items, write the metrics JSON and the per-item judgments beside it.

    An existing metrics or judgments file is refused before anything runs unless `force`.

    `judge` is a spec, or a JudgeSpec parsed with the run's layout (`parse_judge("par", layout)`),
    which records the run's own models as `<run>/...`. Generative judges sample as `sampling`
    says (default: eval.sampling), with n = `votes` when given. `label` names the judge in tables.
    Every setting is checked before the model loads; nothing is written when one is wrong.
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
    items = benchmark.load(config, limit)
    scorer = build_judge(spec, config, block)
    if spec.pairwise:
        judgments = scorer.judge_pairwise(items.pairs)
    else:
        judgments = scorer.judge(benchmark.requests(items.pairs))
    metrics = compute_metrics(bench, judgments, items.groups, ties, block.n, config.judge.voting, spec.pairwise,
                              config.eval.n_boot, config.seed)
    metrics.update(
        judge=label or spec.label, judge_spec=spec.recorded, limit=limit, data_files=items.files, config=config.to_dict(),
        config_fingerprint=config.fingerprint(), packages=package_versions(), git=git_commit(),
        judgments_file=judgments_file.name,
    )  # no times in here: two runs of the same config on the same machine give identical files
    if isinstance(scorer, Judge):
        metrics["engine"] = scorer.engine_settings()  # which engine generated the judgments, and how
    save_judgments(judgments, judgments_file)
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


def run_suite(config: RunConfig, layout: RunLayout) -> list[dict[str, Any]]:
    """Every judge of the profile on every benchmark of the profile, into the run's eval files.

    The run's own judges (sft, par, bt) must exist before the first judgment is made.
    """
    plan = suite_plan(config, layout)
    specs = {judge: parse_judge(judge, layout) for judge in config.eval.judges}
    for spec in specs.values():
        spec.check_files()
    results = []
    for judge, bench, out in plan:
        print(f"[eval] {judge} on {bench}", flush=True)
        results.append(evaluate(config, specs[judge], bench, out, config.eval.limit_for(bench)))
    return results


def votes_curve_file(config: RunConfig, layout: RunLayout) -> Path | None:
    """The metrics file of the votes curve's one sampled evaluation (None: no curve in this profile)."""
    if not config.eval.votes_curve:
        return None
    return layout.eval_metrics(f"{config.eval.votes_curve_judge}-votes{config.eval.votes_curve_sampling.n}",
                               config.eval.votes_curve_bench)


def votes_curve(config: RunConfig, layout: RunLayout) -> list[dict[str, Any]]:
    """Accuracy against the number of votes: n sampled judgments once (eval.votes_curve_sampling),
    scored with the first k for each k of eval.votes_curve."""
    out = votes_curve_file(config, layout)
    if out is None:
        return []
    judge, bench, sampling = config.eval.votes_curve_judge, config.eval.votes_curve_bench, config.eval.votes_curve_sampling
    limit = config.eval.votes_curve_limit or config.eval.limit_for(bench)
    stored = evaluate(config, parse_judge(judge, layout), bench, out, limit, label=judge, sampling=sampling)
    judgments = read_judgments(RunLayout.judgments_of(out))
    return [votes_point(stored, judgments, k) for k in sorted(config.eval.votes_curve)]


def votes_point(stored: dict[str, Any], judgments: Sequence[Judgment], votes: int) -> dict[str, Any]:
    """One point of the votes curve: a stored evaluation rescored with the first `votes` samples per response."""
    metrics = rescore(stored, judgments, votes=votes)
    low, high = metrics["ci95"]["acc"]
    return {"judge": stored["judge"], "bench": stored["bench"], "votes": votes, "acc": metrics["acc"],
            "ci95_low": low, "ci95_high": high, "invalid_share": metrics["invalid"]["share"]}


# ---------------------------------------------------------------- the learning curve (notebook 03)

CURVE_BENCH = "pairs:dev"  # the training sources' dev split: never trained on, never a test item


def curve_points(config: RunConfig, layout: RunLayout) -> list[tuple[int, Path | None]]:
    """(step, adapter) of the curve: the warm-up (or base model) at step 0, then each complete checkpoint."""
    from .train import checkpoint_folders, checkpoint_is_complete

    start = layout.sft_adapter if config.sft.enabled else None
    saved = [(int(f.name.removeprefix("checkpoint-")), f) for f in checkpoint_folders(layout.par_checkpoints)
             if checkpoint_is_complete(f)]
    return [(0, start), *saved]


def learning_curve(config: RunConfig, layout: RunLayout, n_pairs: int) -> list[dict[str, Any]]:
    """Dev accuracy, both readouts, at every point of `curve_points`; one metrics file per point.

    The files have the evaluation format, so `verify` rebuilds their numbers from the judgments.
    """
    from .data import read_pairs, subsample
    from .judge import requests_for_pairs
    from .engine import close_shared_engines
    from .judges import model_judge

    pairs = subsample(read_pairs(layout.pairs("dev")), n_pairs)
    groups = {pair.id: "dev" for pair in pairs}
    rows = []
    for step, adapter in curve_points(config, layout):
        print(f"[curve] step {step}: {layout.relative(adapter) if adapter else 'base model'}", flush=True)
        with adapter_only(adapter) as weights:
            judgments = model_judge(config, config.eval.sampling, weights).judge(requests_for_pairs(pairs))
        metrics = compute_metrics(CURVE_BENCH, judgments, groups, config.eval.ties, 1, config.judge.voting, False,
                                  config.eval.n_boot, config.seed)
        out = layout.curve_metrics(step)
        spec = f"adapter:{layout.relative(adapter)}" if adapter else "base"
        metrics.update(judge=f"{layout.par}@{step}", judge_spec=spec, step=step, config=config.to_dict(),
                       config_fingerprint=config.fingerprint(), judgments_file=RunLayout.judgments_of(out).name)
        save_judgments(judgments, RunLayout.judgments_of(out))
        write_json(out, metrics)
        rows.append(curve_row(metrics))
    close_shared_engines()  # PAR variants often follow in this process: they get the engine's memory and cores
    return rows


@contextlib.contextmanager
def adapter_only(folder: Path | None) -> Iterator[Path | None]:
    """A checkpoint's adapter without the trainer's pickled state beside it (the kit loads no pickles)."""
    if folder is None or not (folder / "optimizer.pt").exists():
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="patarm-adapter-") as copy:
        for name in ("adapter_config.json", ADAPTER_WEIGHTS):
            shutil.copy2(folder / name, Path(copy) / name)
        yield Path(copy)


def curve_row(metrics: dict[str, Any]) -> dict[str, Any]:
    """One point of the learning curve, as its table and figure show it."""
    expected = metrics.get("expected", {})
    return {"step": metrics["step"], "acc": metrics["acc"], "ci95": metrics["ci95"]["acc"],
            "acc_expected": expected.get("acc"), "ci95_expected": expected.get("ci95", {}).get("acc"),
            "invalid_share": metrics["invalid"]["share"], "n": metrics["n"]}


# ---------------------------------------------------------------- comparing judges


def paired_difference(metrics_a: dict[str, Any], metrics_b: dict[str, Any], n_boot: int = 1000, seed: int = 0,
                      readout: str = "sampled") -> dict[str, Any]:
    """Accuracy of judge A minus judge B on the items both judged, with a paired bootstrap interval."""
    key = "outcome" if readout == "sampled" else f"outcome_{readout}"
    a = {item["pair_id"]: item[key] for item in metrics_a["items"]}
    b = {item["pair_id"]: item[key] for item in metrics_b["items"]}
    common = sorted(a.keys() & b.keys())
    if not common:
        raise EvalError(f"{metrics_a['judge']} and {metrics_b['judge']} share no judged items")
    result = paired_bootstrap_diff([a[k] for k in common], [b[k] for k in common], n_boot=n_boot, seed=seed)
    row = {"a": metrics_a["judge"], "b": metrics_b["judge"], "bench": metrics_a["bench"], "n": len(common), **result}
    return row if readout == "sampled" else {**row, "readout": readout}  # rows without the key are sampled (older runs)


def summary_row(metrics: dict[str, Any]) -> dict[str, Any]:
    """One table row per (judge, bench): accuracy with its interval, the invalid share, and the bench's own columns."""
    benchmark = get_bench(metrics["bench"])
    low, high = metrics["ci95"]["acc"] or (None, None)
    row = {"judge": metrics["judge"], "bench": metrics["bench"], "n": benchmark.count(metrics), "acc": metrics["acc"],
           "ci95_low": low, "ci95_high": high, "invalid_share": metrics["invalid"]["share"], **benchmark.table_extras(metrics)}
    if "expected" in metrics:  # generative pointwise judges: the expected-score readout beside the sampled one
        expected = metrics["expected"]
        row.update(acc_expected=expected["acc"], ci95_low_expected=expected["ci95"]["acc"][0],
                   ci95_high_expected=expected["ci95"]["acc"][1])
    return row


def paired_differences(results: Sequence[dict[str, Any]], comparisons: Sequence[Sequence[str]], n_boot: int, seed: int) -> list[dict[str, Any]]:
    """A - B with paired intervals, for every configured comparison on every bench both judges ran."""
    by_key = {(m["judge"], m["bench"]): m for m in results}
    rows = []
    for a, b in comparisons:
        for bench in dict.fromkeys(m["bench"] for m in results):
            if (a, bench) in by_key and (b, bench) in by_key:
                pair = (by_key[(a, bench)], by_key[(b, bench)])
                rows.append(paired_difference(*pair, n_boot, seed))
                if all("expected" in m for m in pair):
                    rows.append(paired_difference(*pair, n_boot, seed, readout="expected"))
    return rows
