"""Re-check a run from its files alone (`patarm-kit verify`), or list how two runs differ (`compare`).

Every number the kit shows a reader is a pure function of the run's stored files: metrics of
stored judgments (`evaluate.compute_metrics`; the sampled-mean readout of the samples stored in
the same judgments files), a judgment's score of its text (the parser),
tables and figure data of the metrics (`figures.TABLES`, `figures.FIGURE_DATA`), SUMMARY.md of
the evaluations (`summary`). `verify_run` rebuilds each of them and compares it with the file a
reader sees, checks that every file the stages recorded is there with the sha256 they recorded,
and that the data files read are the data on disk. Nothing here loads a model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from patarm_kit.config.schema import fingerprint_of
from patarm_kit.data.pairs import DataError, read_pairs, resolve_data_dir
from patarm_kit.data.sources.ifeval import load_ifeval
from patarm_kit.evaluation.downstream import downstream_summary, policy_names
from patarm_kit.evaluation.evaluate import (
    paired_difference,
    read_eval_metrics,
    recompute_metrics,
    summary_row,
    votes_point,
)
from patarm_kit.evaluation.ifeval import score_verdicts, verdict_rows
from patarm_kit.judging.judge import (
    PAIRWISE_ORDERS,
    Judgment,
    judging_summary,
    pairwise_score,
    read_judgments,
    requests_for_pairs,
    requests_for_style_variants,
)
from patarm_kit.judging.prompts import parse_judgment
from patarm_kit.judging.rubrics import criteria_summary, load_rubrics
from patarm_kit.report.differences import (
    _ABSENT,
    Difference,
    _count_numbers,
    table_differences,
    text_differences,
    value_differences,
)
from patarm_kit.report.figures import FIGURE_DATA, suite_metrics
from patarm_kit.report.summary import TABLES, render_summary, summary_json
from patarm_kit.report.tables import table_files
from patarm_kit.runs.files import display_path, read_json, read_jsonl, sha256_of
from patarm_kit.runs.layout import RUN_PREFIX
from patarm_kit.runs.notebooks import EXECUTING, stale_notebooks
from patarm_kit.runs.run import Run

_READ_ERRORS = (OSError, ValueError, KeyError, TypeError, IndexError)  # a damaged file, as a difference


@dataclass
class VerifyReport:
    """What `verify_run` checked, what it could not check (notes), and every difference found.

    `rebuilt` holds the files compared in full with their rebuild: for those the rebuild's
    verdict stands, whatever sha256 a stage recorded before them.
    """

    run_dir: Path
    differences: list[Difference] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    rebuilt: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.differences

    def count(self, what: str, n: int = 1) -> None:
        self.checked[what] = self.checked.get(what, 0) + n

    def summary(self) -> str:
        done = ", ".join(f"{n} {what}" for what, n in self.checked.items()) or "nothing"
        head = (f"OK {display_path(self.run_dir)}: checked {done}" if self.ok else
                f"FAILED {display_path(self.run_dir)}: {len(self.differences)} differences")
        return "\n".join([head, *(f"  {d}" for d in self.differences), *(f"  note: {n}" for n in self.notes)])


# ---------------------------------------------------------------- stage records


def recorded_outputs(manifest: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """{file key: (who recorded it, sha256)}: the files a migration recorded, then each stage's outputs
    (a stage run after a migration rewrites its files, so its record is the newer one), then the
    executed notebooks the chain recorded."""
    records = [("migrated", manifest["migrated"]["outputs"])] if "migrated" in manifest else []
    records += [(f"stage {name}", entry["outputs"]) for name, entry in manifest.get("stages", {}).items() if "outputs" in entry]
    records += [(f"notebook {name}", entry["outputs"]) for name, entry in manifest.get("notebooks", {}).items() if "outputs" in entry]
    return {key: (record, sha) for record, outputs in records for key, sha in outputs.items()}


# ---------------------------------------------------------------- verify


def _suite_metrics(run: Run, report: VerifyReport) -> dict[str, dict[str, Any]]:
    """Each eval/*.json rebuilt from its judgments and checked field by field; the rebuilt files by name."""
    recomputed = {}
    for path in [*sorted(run.layout.eval_dir.glob("*.json")), *sorted(run.layout.par_curve.glob("*.json"))]:
        name = run.layout.key(path)
        try:
            stored, again = read_json(path), recompute_metrics(path)
        except _READ_ERRORS as err:
            report.differences.append(Difference(name, "(file)", f"cannot be recomputed ({type(err).__name__}: {err})"))
            continue
        report.differences += value_differences({k: stored.get(k, _ABSENT) for k in again}, again, name, ("stored", "recomputed"))
        report.count("metrics files")
        report.count("numbers", _count_numbers(again))
        recomputed[path.name] = {**stored, **again}
    if not recomputed:
        report.notes.append("no eval/*.json metrics files (stage eval not run)")
    return recomputed


def _data_root(manifest: dict[str, Any], data_dir: str | None) -> Path | None:
    """Where relative data paths point: --data-dir, else the folder the run recorded, else the default."""
    if data_dir:
        return Path(data_dir)
    recorded = [s["data_dir"] for s in manifest.get("data", {}).values() if s.get("data_dir")]
    if recorded:
        return Path(recorded[0])
    try:
        return resolve_data_dir(manifest["config"]["data"]["data_dir"])
    except DataError:
        return None


def _check_data(run: Run, manifest: dict[str, Any], recomputed: dict[str, dict[str, Any]], data_dir: str | None,
                report: VerifyReport) -> None:
    """Every data hash recorded (manifest data section, eval files' data_files) against the file on disk,
    and a data section for every configured source once the data stage ran."""
    sections = manifest.get("data", {})
    if run.stage_done("data"):
        for source in manifest["config"]["data"]["sources"]:
            if not sections.get(source["name"], {}).get("files"):
                report.differences.append(Difference("manifest.json", f"data.{source['name']}",
                                                     "no data hashes for this source, but the data stage ran"))
    root = _data_root(manifest, data_dir)
    recorded = [("manifest.json", f"data.{source}.files.{key}", key, sha)
                for source, facts in sections.items() for key, sha in facts.get("files", {}).items()]
    recorded += [(f"eval/{name}", f"data_files.{key}", key, sha)
                 for name, metrics in recomputed.items() for key, sha in metrics.get("data_files", {}).items()]
    on_disk: dict[Path, str | None] = {}
    for file, where, key, sha in recorded:
        if key.startswith("hub:"):
            report.notes.append(f"{file}: {where}: a hub dataset, not checked offline")
            continue
        if key.startswith(RUN_PREFIX):  # a stage-01 pair file of the run itself
            path = run.layout.resolve(key)
            if key.removeprefix(RUN_PREFIX) in manifest.get("left_out", {}) and not path.is_file():
                continue  # left out of a published run on purpose, and noted as such
        else:
            path = Path(key) if Path(key).is_absolute() or root is None else root / key
        if path not in on_disk:
            on_disk[path] = sha256_of(path) if path.is_file() else None
            report.count("data files")
        if on_disk[path] is None:
            report.differences.append(Difference(file, where, f"{path} not found (pass --data-dir?)"))
        elif on_disk[path] != sha:
            report.differences.append(Difference(file, where, f"recorded sha256 {sha}, on disk {on_disk[path]} ({path})"))
    if not recorded:
        report.notes.append("no data hashes recorded (stage data not run)")


def _check_benchmark_summary(run: Run, manifest: dict[str, Any], recomputed: dict[str, dict[str, Any]], report: VerifyReport) -> None:
    """metrics/04_benchmarks.json: table, paired and votes-curve rows rebuilt from the eval files."""
    path = run.layout.benchmarks_summary
    name = run.layout.key(path)
    if not path.is_file():
        if run.stage_done("eval"):
            report.differences.append(Difference(name, "(file)", "missing, but the eval stage ran"))
        else:
            report.notes.append(f"no {name} (stage eval not run)")
        return
    summary, config = read_json(path), manifest["config"]
    eval_dir = run.layout.eval_dir

    def metrics_of(section: str, index: int, judge: str, bench: str) -> dict[str, Any] | None:
        """The recomputed eval file a row was made from (a missing one is a difference)."""
        file = run.layout.eval_metrics(judge, bench).name
        if file not in recomputed:
            report.differences.append(Difference(name, f"{section}[{index}]", f"eval/{file} is missing or unreadable"))
        return recomputed.get(file)

    def check(section: str, index: int, row: dict[str, Any], again: dict[str, Any]) -> None:
        report.differences += value_differences(row, again, name, ("stored", "recomputed"), f"{section}[{index}]")
        report.count(f"{section} rows")

    for index, row in enumerate(summary.get("table", [])):
        if metrics := metrics_of("table", index, row["judge"], row["bench"]):
            check("table", index, row, summary_row(metrics))
    for index, row in enumerate(summary.get("paired", [])):
        a, b = metrics_of("paired", index, row["a"], row["bench"]), metrics_of("paired", index, row["b"], row["bench"])
        if a and b:
            check("paired", index, row, paired_difference(a, b, config["eval"]["n_boot"], config["seed"],
                                                          readout=row.get("readout", "greedy")))
    curve = summary.get("votes_curve", [])
    for index, row in enumerate(curve):  # the curve rescored one file: the judge's run with the most votes
        most = max(r["votes"] for r in curve if (r["judge"], r["bench"]) == (row["judge"], row["bench"]))
        if stored := metrics_of("votes_curve", index, f"{row['judge']}-votes{most}", row["bench"]):
            judgments = read_judgments(eval_dir / stored["judgments_file"])
            check("votes_curve", index, row, votes_point(stored, judgments, row["votes"]))


def _check_downstream(run: Run, manifest: dict[str, Any], data_dir: str | None, report: VerifyReport) -> None:
    """IFEval of every policy: verdicts re-checked from the stored responses, the numbers rescored from
    the verdicts, and metrics/05_downstream.json rebuilt from those files."""

    if not run.stage_done("downstream"):
        return
    layout, config = run.layout, run.config()
    prompts = load_ifeval(_data_root(manifest, data_dir))[0]
    for policy in policy_names(config):
        metrics_path = layout.ifeval_metrics(policy)
        stored, verdicts_path = read_json(metrics_path), layout.judgments_of(metrics_path)
        responses = {row["key"]: row["response"] for row in read_jsonl(layout.ifeval_responses(policy))}
        stored_rows = read_jsonl(verdicts_path)
        report.differences += value_differences(stored_rows, verdict_rows(prompts, responses), layout.key(verdicts_path),
                                                ("stored", "re-checked"))
        again = score_verdicts(stored_rows, config.eval.n_boot, config.seed)
        report.differences += value_differences({k: stored[k] for k in again}, again, layout.key(metrics_path),
                                                ("stored", "rescored"))
        report.count("IFEval policies")
    report.differences += value_differences(read_json(layout.downstream_summary), downstream_summary(run),
                                            layout.key(layout.downstream_summary), ("stored", "rebuilt"))


def _check_config(run: Run, manifest: dict[str, Any], recomputed: dict[str, dict[str, Any]], report: VerifyReport) -> None:
    """The manifest's config matches its fingerprint, and every eval file was made with that config."""
    # Hash the config as recorded, not a RunConfig rebuilt by today's code (which may have
    # gained keys), so a newer kit can check an older run.
    recorded, actual = manifest["config_fingerprint"], fingerprint_of(manifest["config"])
    if actual != recorded:
        report.differences.append(Difference("manifest.json", "config_fingerprint", f"recorded {recorded}, config hashes to {actual}"))
    for name, metrics in recomputed.items():
        if metrics.get("config_fingerprint") != recorded:
            report.differences.append(Difference(f"eval/{name}", "config_fingerprint",
                                                 f"{metrics.get('config_fingerprint')}, the run's config is {recorded}"))


# ------------------------------------------------ judgments: each score is its text's parse


def _judgment_files(run: Run) -> Iterator[tuple[Path, str | None]]:
    """Every judgments file of the run (evaluations, learning curve, preview, warm-up checks), with the judge
    spec of its metrics file (None: the generative judge)."""
    layout = run.layout
    for path in [*sorted(layout.eval_dir.glob("*.json")), *sorted(layout.par_curve.glob("*.json"))]:
        try:
            stored = read_json(path)
            yield path.parent / stored["judgments_file"], stored["judge_spec"]
        except _READ_ERRORS:
            continue  # reported by _suite_metrics
    for path in (layout.preview_judgments, layout.sft_check_judgments):
        if path.is_file():
            yield path, None


def _stored_responses(run: Run) -> dict[tuple[str, str], str]:
    """(pair id, side) -> response, from the pair files the run keeps (a split left empty keeps none)."""
    pairs = [pair for path in run.layout.pair_files() if path.stat().st_size for pair in read_pairs(path)]
    return {(r.pair_id, r.side): r.response for r in [*requests_for_pairs(pairs), *requests_for_style_variants(pairs)]}


def reparsed_score(judgment: Judgment) -> tuple[float | None, str | None]:
    """A generative judgment's score and invalid reason as the parser reads its stored text today."""
    if judgment.side in PAIRWISE_ORDERS:  # the pairwise judge
        return pairwise_score(judgment.text, judgment.side, truncated=judgment.truncated)
    parsed = parse_judgment(judgment.text, truncated=judgment.truncated)
    return parsed.score, None if parsed.invalid_reason is None else str(parsed.invalid_reason)


def _check_judgments(run: Run, report: VerifyReport) -> None:
    """Every generative judgment's score and invalid reason equal the parse of its text; a length
    judgment's score equals its response's length where the run keeps the pair files."""
    responses: dict[tuple[str, str], str] | None = None
    skipped = 0
    for path, spec in _judgment_files(run):
        name = run.layout.key(path)
        try:
            rows = read_jsonl(path)
            judgments = [Judgment(**{k: v for k, v in row.items() if k != "judge"}) for row in rows]
        except _READ_ERRORS as err:
            report.differences.append(Difference(name, "(file)", f"unreadable ({type(err).__name__}: {err})"))
            continue
        for number, j in enumerate(judgments, start=1):
            where = f"line {number} ({j.pair_id}, {j.side}, {j.draw + ' ' if j.draw else ''}sample {j.sample})"
            if not j.text and not j.prompt_tokens and not j.completion_tokens:  # a plain judge: a number, no text
                if spec == "length":
                    responses = _stored_responses(run) if responses is None else responses
                    if (j.pair_id, j.side) in responses:
                        expected = float(len(responses[(j.pair_id, j.side)]))
                        if j.score != expected:
                            report.differences.append(Difference(name, f"{where}.score", f"stored {j.score!r}, the response has {expected:.0f} characters"))
                        report.count("judgments re-scored")
                        continue
                skipped += 1
                continue
            score, reason = reparsed_score(j)
            if j.score != score:
                report.differences.append(Difference(name, f"{where}.score", f"stored {j.score!r}, its text parses to {score!r}"))
            elif j.invalid_reason != reason:
                report.differences.append(Difference(name, f"{where}.invalid_reason", f"stored {j.invalid_reason!r}, its text gives {reason!r}"))
            report.count("judgments re-parsed")
    if skipped:
        report.notes.append(f"{skipped} judgments of plain judges (random, bt, or length without the run's pair files) "
                            "have no text to re-parse")


def _check_preview(run: Run, manifest: dict[str, Any], report: VerifyReport) -> None:
    """metrics/02_base_judge.json: the untrained judge's parse rate, invalid reasons and criteria, from its judgments."""
    layout = run.layout
    if not (layout.preview_metrics.is_file() and layout.preview_judgments.is_file()):
        return
    name = layout.key(layout.preview_metrics)
    try:
        stored, judgments = read_json(layout.preview_metrics), read_judgments(layout.preview_judgments)
        again = {"judging": judging_summary(judgments),
                 "criteria": criteria_summary(judgments, load_rubrics(manifest["config"]["judge"]["rubric_file"]))}
    except _READ_ERRORS as err:
        report.differences.append(Difference(name, "(file)", f"cannot be recomputed ({type(err).__name__}: {err})"))
        return
    report.differences += value_differences({k: stored.get(k, _ABSENT) for k in again}, again, name, ("stored", "recomputed"))
    report.count("numbers", _count_numbers(again))


# ------------------------------------------------ tables, figure data and SUMMARY.md: rebuilt and compared


def _table_text(build: Callable[[Path], Any], run_dir: Path, ext: str) -> str | None:
    table = build(run_dir)
    return None if table is None else table_files(table)[ext]


def _generated_files(run: Run) -> list[tuple[Path, Callable[[], str | None], Callable[[str, str, str], list[Difference]]]]:
    """(file, its rebuild from the run's files, how to compare them) for tables/, figures/*.csv and SUMMARY.md."""
    layout = run.layout
    files = [(layout.table(name, ext), partial(_table_text, build, run.dir, ext), partial(table_differences, markdown=ext == "md"))
             for name, build in TABLES.items() for ext in ("csv", "md")]
    files += [(layout.figure_data(name), partial(_table_text, build, run.dir, "csv"), table_differences)
              for name, build in FIGURE_DATA.items()]
    files.append((layout.summary, lambda: render_summary(summary_json(run.dir)), text_differences))
    return files


def _check_generated(run: Run, report: VerifyReport) -> None:
    """Each generated file present rebuilt from the run's files and compared; one without its inputs is a difference."""
    for path, rebuild, compare in _generated_files(run):
        if not path.is_file():
            continue  # a file a stage recorded is checked for presence in _check_outputs
        name = run.layout.key(path)
        try:
            rebuilt = rebuild()
        except _READ_ERRORS as err:
            report.differences.append(Difference(name, "(file)", f"cannot be rebuilt ({type(err).__name__}: {err})"))
            continue
        if rebuilt is None:
            report.differences.append(Difference(name, "(file)", "the run's files no longer give it (its inputs are gone)"))
            continue
        report.differences += compare(name, path.read_text(encoding="utf-8"), rebuilt)
        report.rebuilt.add(name)
        report.count("generated files")
    layout = run.layout
    undrawn = [layout.key(layout.figure_data(n)) for n in FIGURE_DATA if layout.figure(n).is_file() and not layout.figure_data(n).is_file()]
    if undrawn:
        report.notes.append(f"figures without their data beside them (drawn before figure data was saved): {', '.join(undrawn)}")
    if not layout.summary.is_file():
        report.notes.append(f"no {layout.key(layout.summary)} (the figures stage writes it; "
                            "`python -m patarm_kit.summary --migrate RUN` adds it to an older run)")


def _check_outputs(run: Run, manifest: dict[str, Any], report: VerifyReport) -> None:
    """Every file a stage (or a migration) recorded is present, with the sha256 recorded, unless rebuilt above."""
    left_out = manifest.get("left_out", {})  # files deliberately not kept (e.g. weights of a committed run): key -> why
    for name, why in stale_notebooks(manifest).items():  # an executed notebook must show what the run's files hold
        report.differences.append(Difference(run.layout.key(run.layout.notebook(name)), "(notebook)",
                                             f"stale: {why}; `patarm-kit run ... --resume` executes it again"))
    for section in ("stages", "notebooks", "training"):  # a stage that failed, was stopped or is running is not a result
        running_here = os.environ.get(EXECUTING) if section == "notebooks" else None  # a notebook verifying its own run
        for name, entry in manifest.get(section, {}).items():
            if isinstance(entry, dict) and entry.get("status", "done") != "done" and name != running_here:
                report.differences.append(Difference("manifest.json", f"{section}.{name}",
                                                     f"status {entry['status']}" + (f": {entry['error']}" if entry.get("error") else "")))
    without = [name for name, entry in manifest.get("stages", {}).items() if entry.get("status") == "done" and "outputs" not in entry]
    if without:
        report.notes.append(f"stage records without outputs (made before stages recorded their files): {', '.join(without)}"
                            + ("; the migration's record lists the files present then" if "migrated" in manifest else
                               "; their files' presence is not checked"))
    for key, (record, sha) in recorded_outputs(manifest).items():
        path = run.dir / key
        report.count("recorded files")
        if not path.is_file():
            kept_out = next((why for prefix, why in left_out.items() if key == prefix or key.startswith(prefix.rstrip("/") + "/")), None)
            if kept_out is None:
                report.differences.append(Difference(key, "(file)", f"missing; recorded by {record}"))
            else:
                report.notes.append(f"{key}: left out ({kept_out})")
        elif key not in report.rebuilt and (actual := sha256_of(path)) != sha:
            report.differences.append(Difference(key, "(file)", f"sha256 {actual[:16]}…, {record} recorded {sha[:16]}…: "
                                                 "changed after it was written"))


def verify_run(run_dir: Path | str, data_dir: str | None = None) -> VerifyReport:
    """Rebuild every number of a run a reader sees from its stored files and compare; check files and data hashes."""
    run = Run.open(run_dir)
    manifest = run.manifest()
    report = VerifyReport(run.dir)
    recomputed = _suite_metrics(run, report)
    _check_config(run, manifest, recomputed, report)
    _check_data(run, manifest, recomputed, data_dir, report)
    _check_benchmark_summary(run, manifest, recomputed, report)
    _check_judgments(run, report)
    _check_preview(run, manifest, report)
    _check_downstream(run, manifest, data_dir, report)
    _check_generated(run, report)
    _check_outputs(run, manifest, report)
    return report


# ---------------------------------------------------------------- compare


def compare_runs(run_a: Path | str, run_b: Path | str) -> list[Difference]:
    """How two runs differ: accuracy and interval per eval file (judge x bench), and config keys."""
    a, b = Run.open(run_a), Run.open(run_b)
    for run in (a, b):
        suite_metrics(run.dir)  # an incomplete or damaged run is refused before anything is compared
    labels = ("A", "B")
    differences = value_differences(a.manifest()["config"], b.manifest()["config"], "manifest.json", labels, "config")
    files_a = {p.name: p for p in a.layout.eval_dir.glob("*.json")}
    files_b = {p.name: p for p in b.layout.eval_dir.glob("*.json")}
    for name in sorted(files_a.keys() | files_b.keys()):
        if name not in files_a or name not in files_b:
            differences.append(Difference(f"eval/{name}", "(file)", f"only in {'A' if name in files_a else 'B'}"))
            continue
        metrics_a, metrics_b = read_eval_metrics(files_a[name]), read_eval_metrics(files_b[name])
        for key in ("acc", "ci95"):
            differences += value_differences(metrics_a.get(key), metrics_b.get(key), f"eval/{name}", labels, key)
    return differences
