"""SUMMARY.md: a run's headline numbers, generated from its files, and the README block made from it.

A reader meets a run's results in three places: the run's SUMMARY.md, `patarm-kit summary`
and the README. All three come from `summary_json`, which reads only the run's stored
evaluations (metrics files and per-item judgments), so `patarm-kit verify` rebuilds SUMMARY.md
and compares it byte for byte, and tests/test_readme_results.py checks the README block.

Each (judge, bench) row gives accuracy under both tie rules. The run scores with one rule
(`eval.ties`); the other is recomputed from the same stored judgments, because "ties count ½"
and "ties count 0" can rank two judges differently when one of them often ties or fails to
parse. Beside them: the 95% bootstrap interval, n, the share of tied comparisons, the share of
invalid judgments and how many judgments saw a truncated input. The bench tables read the greedy
readout; the expected-score, sampled-mean and sampled-expected readouts, where measured, have tables of their own
under each bench's, and every paired difference is given under each readout both judges have.

    python -m patarm_kit.report.summary --migrate results/<run>   # add figure data, tables, SUMMARY.md to an older run
    python -m patarm_kit.report.summary --update-readme README.md # rewrite the README's summary blocks
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from patarm_kit.config.rules import READOUTS, readout_name
from patarm_kit.evaluation.downstream import downstream_frame, paired_frame
from patarm_kit.evaluation.evaluate import (
    SECTIONED,
    paired_differences,
    readout_field,
    readout_key,
    rescore,
    stored_judgments,
    summary_row,
)
from patarm_kit.evaluation.stats import p_text
from patarm_kit.judging.judge import Judgment
from patarm_kit.report.figures import FIGURE_DATA, bench_label, suite_metrics
from patarm_kit.report.paper import paper_frame, policy_relative_improvement
from patarm_kit.report.tables import benchmark_frame, save_table
from patarm_kit.runs.env import git_commit, now
from patarm_kit.runs.files import RunError, atomic_write_text, read_json, sha256_of, write_json
from patarm_kit.runs.layout import RunLayout
from patarm_kit.runs.run import Run

TIE_RULES = ("half", "zero")  # ties and invalid judgments count ½, or count as wrong
TIE_LABELS = {"half": "ties count ½", "zero": "ties count 0"}
# The readouts of eval.sampled_mean's draws, as SUMMARY.md opens their tables.
SAMPLED_READOUT_TITLES = {"sampled-mean": "Sampled-mean readout (the mean score",
                          "sampled-expected": "Sampled-expected readout (the mean expected score"}
# A table row's keys that are not its bench's own columns (SUMMARY.md shows each other readout in a table of its own).
_ROW_KEYS = ("judge", "bench", "n", "invalid_share",
             *(readout_field(f, r) for r in READOUTS for f in ("acc", "ci95_low", "ci95_high")))


# ---------------------------------------------------------------- the numbers
# The tables every run's figures stage writes (tables/<name>.csv and .md); verify rebuilds each.
TABLES = {"06_benchmarks": benchmark_frame, "06_paper_vs_ours": paper_frame}


def rescored(stored: dict[str, Any], judgments: Sequence[Judgment], ties: str,
             samples: Sequence[Judgment] = ()) -> dict[str, Any]:
    """A stored evaluation scored under a tie rule, from its judgments and samples (same items, votes and bootstrap seed)."""
    return stored if ties == stored["ties"] else {**stored, **rescore(stored, judgments, ties, samples=samples)}


def _tie_share(scored: dict[str, dict[str, Any]], readout: str) -> float:
    """A tied comparison adds ½ under one rule and 0 under the other, so twice the gap between the
    rules' per-item outcomes is the share of comparisons that tied (equal or invalid)."""
    outcome = readout_field("outcome", readout)
    half, zero = (np.array([item[outcome] for item in scored[ties]["items"]]) for ties in ("half", "zero"))
    return float(2 * np.mean(half - zero))


def headline_row(stored: dict[str, Any], judgments: Sequence[Judgment], samples: Sequence[Judgment] = ()) -> dict[str, Any]:
    """One (judge, bench): accuracy and interval under both tie rules, n, tie share, invalid share, truncation;
    and the same under each other readout measured."""
    scored = {ties: rescored(stored, judgments, ties, samples) for ties in TIE_RULES}
    rows = {ties: summary_row(metrics) for ties, metrics in scored.items()}
    counted = [j for j in judgments if stored["votes"] is None or j.sample < stored["votes"]]
    own = rows[stored["ties"]]
    return {
        "judge": stored["judge"],
        "bench": stored["bench"],
        "n": own["n"],
        "acc": {ties: rows[ties]["acc"] for ties in TIE_RULES},
        "ci95": {ties: [rows[ties]["ci95_low"], rows[ties]["ci95_high"]] for ties in TIE_RULES},
        "tie_share": _tie_share(scored, "greedy"),
        "invalid_share": stored["invalid"]["share"],
        "truncated_inputs": sum(bool(j.input_truncated) for j in counted),
        "judgments": len(counted),
        "extras": {key: value for key, value in own.items() if key not in _ROW_KEYS},  # the bench's own columns
        **{readout_key(r): other_readout(scored, r) for r in SECTIONED if readout_key(r) in stored},
    }


def other_readout(scored: dict[str, dict[str, Any]], readout: str) -> dict[str, Any]:
    """One (judge, bench) under a readout with a section of its own: accuracy and interval under both tie
    rules, tie share, invalid share, and what the readout adds (expected: `forced` score tags; sampled ones:
    `samples` per response)."""
    section = {ties: metrics[readout_key(readout)] for ties, metrics in scored.items()}
    return {"acc": {ties: section[ties]["acc"] for ties in TIE_RULES},
            "ci95": {ties: section[ties]["ci95"]["acc"] for ties in TIE_RULES},
            "tie_share": _tie_share(scored, readout), "invalid_share": section["half"]["invalid"]["share"],
            **{key: section["half"][key] for key in ("forced", "samples") if key in section["half"]}}


def summary_json(run_dir: Path | str) -> dict[str, Any]:
    """The run's headline numbers: a row per (judge, bench) and the configured paired differences."""
    run = Run.open(run_dir)
    manifest, layout = run.manifest(), run.layout
    config = manifest["config"]
    order = {bench: i for i, bench in enumerate(config["eval"]["benches"])}
    results = sorted(suite_metrics(run.dir), key=lambda m: order.get(m["bench"], len(order)))  # stable: judge order kept
    rows = [headline_row(m, *stored_judgments(layout.eval_dir, m)) for m in results]
    paired = paired_differences(results, config["eval"]["paired"], config["eval"]["n_boot"], config["seed"])
    facts = {"run": manifest["run_name"], "profile": manifest["profile"], "config_fingerprint": manifest["config_fingerprint"],
             "ties": config["eval"]["ties"], "n_boot": config["eval"]["n_boot"], "rows": rows, "paired": paired}
    if config["eval"].get("sampled_mean"):
        facts["sampled_mean"] = config["eval"]["sampled_mean"]  # how its judgments were sampled
    if layout.downstream_summary.is_file():
        facts["downstream"] = read_json(layout.downstream_summary)
    primary = config["eval"].get("primary")
    if primary:
        readout = readout_name(primary["readout"])
        facts["primary"] = {**primary, "readout": readout, "result": next(
            (p for p in paired if (p["a"], p["b"], p["bench"], p.get("readout", "greedy")) ==
             (primary["a"], primary["b"], primary["bench"], readout)), None)}
    return facts


# ---------------------------------------------------------------- SUMMARY.md


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _with_interval(value: float | None, interval: Sequence[float | None]) -> str:
    low, high = interval
    return _pct(value) + ("" if low is None else f" [{_pct(low)}, {_pct(high)}]")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def render_summary(facts: dict[str, Any]) -> str:
    """SUMMARY.md's text from `summary_json`: one table per bench, then the paired differences."""
    own = facts["ties"]
    accuracy = [f"accuracy, {TIE_LABELS[t]}" + (" (the run's rule)" if t == own else "") for t in TIE_RULES]
    lines = [
        f"# Summary of run `{facts['run']}`",
        "",
        f"Profile `{facts['profile']}`, config `{facts['config_fingerprint']}`. Generated from the run's stored "
        "evaluations by `patarm-kit summary`; `patarm-kit verify` rebuilds this file and compares it byte for byte.",
        "",
        "Accuracy in %, with its seeded bootstrap 95% interval over prompts. The run scores ties and invalid "
        f"judgments by `eval.ties: {own}`; the other accuracy column rescores the same stored judgments by the other "
        "rule. Tie share (%): comparisons with equal scores or an invalid judgment. Invalid share (%): judgments "
        "without a score. Truncated inputs: judgments whose prompt or response was cut to fit the judge, as each "
        "judgment records it. Further columns: the bench's own scores from its table row, in %, by the run's rule. "
        "The bench tables read the greedy readout: the score each judgment wrote; the tables under them read the "
        "same responses by another readout, where measured.",
    ]
    if "primary" in facts:
        lines += ["", *_primary_lines(facts["primary"], own, len(facts["paired"]), facts["n_boot"])]
    if not facts["rows"]:
        lines += ["", "No evaluations in this run (the eval stage has not run)."]
    for bench in dict.fromkeys(row["bench"] for row in facts["rows"]):
        rows = [row for row in facts["rows"] if row["bench"] == bench]
        extra = list(dict.fromkeys(key for row in rows for key in row["extras"]))
        header = ["judge", "n", *accuracy, "tie share", "invalid share", "truncated inputs", *extra]
        body = [[f"`{row['judge']}`", str(row["n"]), *(_with_interval(row["acc"][t], row["ci95"][t]) for t in TIE_RULES),
                 _pct(row["tie_share"]), _pct(row["invalid_share"]), f"{row['truncated_inputs']} of {row['judgments']}",
                 *(_pct(row["extras"].get(key)) for key in extra)] for row in rows]
        lines += ["", f"## {bench_label(bench)}", "", *_table(header, body)]
        if any("expected" in row for row in rows):
            lines += ["", "Expected-score readout (the same judgments; judges without one are left out):", "",
                      *_readout_table(rows, "expected", ["no score digit", "`<score>` added"],
                                      lambda row, e: f"{e['forced']} of {row['judgments']}")]
        for readout, what in SAMPLED_READOUT_TITLES.items():
            if any(readout_key(readout) in row for row in rows):
                block = facts["sampled_mean"]
                lines += ["", f"{what} of {block['n']} judgments per response sampled at temperature "
                          f"{block['temperature']}, top-p {block['top_p']}, each response seeded by itself; judges "
                          "without it are left out). No valid sample: responses none of whose samples gave a score.", "",
                          *_readout_table(rows, readout, ["no valid sample", "samples per response"],
                                          lambda row, s: str(s["samples"]))]
    if facts["paired"]:
        with_readout = any("readout" in p for p in facts["paired"])  # runs with another readout than greedy
        body = [[f"`{p['a']}` − `{p['b']}`", bench_label(p["bench"]), *([p.get("readout", "greedy")] if with_readout else []),
                 str(p["n"]), _difference(p), p_text(p["p_value"], facts["n_boot"])] for p in facts["paired"]]
        readout_column = ["readout"] if with_readout else []
        lines += ["", "## Paired differences", "",
                  f"Accuracy of A minus accuracy of B on the items both judged, in points, with a paired bootstrap "
                  f"95% interval and p-value ({TIE_LABELS[own]}, the run's rule).", "",
                  *_table(["A − B", "bench", *readout_column, "n", "difference [95%]", "p"], body)]
    if "downstream" in facts:
        lines += ["", *_downstream_lines(facts["downstream"])]
    return "\n".join(lines) + "\n"


def _downstream_lines(downstream: dict[str, Any]) -> list[str]:
    """The downstream section: each policy's four IFEval numbers, then the paired differences between policies."""

    checker, policies, paired = downstream["checker"], downstream_frame(downstream), paired_frame(downstream)
    ours, source = policy_relative_improvement(downstream)
    return [
        "## Downstream RLHF: IFEval", "",
        "One policy per rewarder, trained from the same base model on the same prompts with the same settings; "
        "the untrained policy is the base model. Each answered IFEval's prompts greedily; IFEval's checker "
        f"({checker['package']} {checker['version']}; punkt: {checker['punkt']}) gives the four numbers, in %, with "
        "bootstrap 95% intervals over prompts.", "",
        *_table(list(policies.columns), [list(map(str, row)) for row in policies.values]), "",
        "Paired differences between policies on the same prompts, in points, with a paired bootstrap 95% interval:", "",
        *_table(list(paired.columns), [list(map(str, row)) for row in paired.values]), "",
        _infobench_line(downstream.get("infobench")), "",
        f"The paper reports +13.6% average relative improvement over the base policies (IFEval and InFoBench, 8B-14B "
        f"judges, full-size RLHF). Ours: {'none' if ours is None else f'{ours:+.1f}%'} ({source}). Not comparable in "
        "size: here the policy and the judge are SmolLM2-135M, trained for a few CPU steps.",
    ]


def _infobench_line(record: dict[str, Any] | None) -> str:
    """InFoBench's DRFR per policy, or why it was not run."""
    if record is None or record["status"] != "done":
        return f"InFoBench: not run ({record['why'] if record else 'no record'})."
    drfr = "; ".join(f"{policy} {100 * r['drfr']:.1f}% of {r['questions']}" for policy, r in record["policies"].items())
    return f"InFoBench DRFR (evaluator {record['evaluator']}, not the authors' GPT-4): {drfr}."


def _difference(p: dict[str, Any]) -> str:
    return f"{100 * p['diff']:+.1f} [{100 * p['lo']:+.1f}, {100 * p['hi']:+.1f}]"


def _readout_table(rows: list[dict[str, Any]], readout: str, labels: list[str],
                   last: Callable[[dict[str, Any], dict[str, Any]], str]) -> list[str]:
    """The judges measured by a readout with a section of its own: accuracy under both tie rules, tie share,
    its invalid share and its own last column (`labels` names those two)."""
    header = ["judge", *(f"accuracy, {TIE_LABELS[t]}" for t in TIE_RULES), "tie share", *labels]
    body = [[f"`{row['judge']}`", *(_with_interval(r["acc"][t], r["ci95"][t]) for t in TIE_RULES), _pct(r["tie_share"]),
             _pct(r["invalid_share"]), last(row, r)]
            for row in rows if (r := row.get(readout_key(readout)))]
    return _table(header, body)


def _primary_lines(primary: dict[str, Any], own: str, comparisons: int, n_boot: int) -> list[str]:
    """The comparison the profile stated before the run, first, with how many others were made."""
    result = primary["result"]
    name = f"`{primary['a']}` − `{primary['b']}` on {bench_label(primary['bench'])}, {primary['readout']} readout"
    found = ("not evaluated in this run" if result is None else
             f"**{_difference(result)}** points (paired bootstrap 95%, p {p_text(result['p_value'], n_boot)}, n {result['n']}, "
             f"{TIE_LABELS[own]})")
    return ["## Primary comparison", "",
            f"Stated in the profile before the run (`eval.primary`): {name}: {found}. The other "
            f"{comparisons - (result is not None)} paired differences below are secondary (no correction for multiple comparisons)."]


def write_summary(run_dir: Path | str) -> Path:
    """Write <run>/SUMMARY.md (the figures stage calls this; it records the file as its output)."""
    path = RunLayout(Path(run_dir)).summary
    atomic_write_text(path, render_summary(summary_json(run_dir)))
    return path


# ---------------------------------------------------------------- the README's results block

README_BLOCK = re.compile(r"(<!-- summary:begin (\S+) -->\n)(.*?)(<!-- summary:end -->)", re.DOTALL)


def readme_block(summary_text: str, run: str) -> str:
    """A run's results block for the README: its SUMMARY.md less the title, headings one level down."""
    body = summary_text.split("\n", 1)[1].lstrip("\n")
    body = re.sub(r"^## ", "### ", body, flags=re.MULTILINE)
    return f"From [`{run}/SUMMARY.md`]({run}/SUMMARY.md) (generated; a test checks that this block matches it).\n\n{body}\n"


def render_readme(readme_text: str, root: Path) -> str:
    """The README with every `<!-- summary:begin RUN -->` block remade from RUN/SUMMARY.md (RUN relative to `root`)."""
    def block(match: re.Match) -> str:
        summary = RunLayout(Path(root) / match[2]).summary.read_text(encoding="utf-8")
        return match[1] + readme_block(summary, match[2]) + match[4]

    return README_BLOCK.sub(block, readme_text)


# ---------------------------------------------------------------- migrating a run made before summaries


def migrate(run_dir: Path | str) -> dict[str, Any]:
    """Bring a run made before figure data, SUMMARY.md and output records up to date, once.

    Writes each drawn figure's data (the figures themselves are not redrawn), regenerates
    tables/, writes SUMMARY.md, records the sha256 of every file then present (but the run's
    hand-written README), and says so in manifest["migrated"]. Nothing else is computed anew.
    """
    run = Run.open(run_dir)
    layout, manifest = run.layout, run.manifest()
    if "migrated" in manifest:
        raise RunError(f"{run.dir}: already migrated on {manifest['migrated']['at']}")
    added, regenerated = [], {}
    for name, build in FIGURE_DATA.items():
        path = layout.figure_data(name)
        if layout.figure(name).is_file() and not path.exists() and (data := build(run.dir)) is not None:
            atomic_write_text(path, data.to_csv(index=False))
            added.append(layout.key(path))
    for name, build in TABLES.items():
        table = build(run.dir)
        if table is None:
            continue
        paths = [layout.table(name, ext) for ext in ("csv", "md")]
        before = {path: path.read_bytes() if path.is_file() else None for path in paths}
        save_table(table, run.dir, name)
        regenerated.update({layout.key(p): "added" if before[p] is None else "unchanged" if before[p] == p.read_bytes()
                            else "changed" for p in paths})
    write_summary(run.dir)
    added.append(layout.key(layout.summary))
    note = {
        "at": now(),
        "by": "python -m patarm_kit.report.summary --migrate",
        "git": git_commit(),
        "added": added,
        "regenerated": regenerated,
        "note": "figure data written from the run's files (figures not redrawn); tables regenerated; SUMMARY.md "
                "written; outputs: the sha256 of every file present at migration but the run's README, which verify checks "
                "(the stage records of this run predate output records)",
        "outputs": {layout.key(p): sha256_of(p) for p in sorted(run.dir.rglob("*"))
                    if p.is_file() and p not in (layout.manifest, layout.readme)},  # the run's README is prose, not a result
    }
    write_json(layout.manifest, {**run.manifest(), "migrated": note})
    return note


# ---------------------------------------------------------------- publishing a run (committing it)


def publish(run_dir: Path | str) -> dict[str, str]:
    """Delete the files a committed run leaves out (layout.LOCAL_ONLY) and record each in
    manifest["left_out"] with why, so `verify` knows they are missing on purpose."""
    run = Run.open(run_dir)
    files = sorted(p for p in run.dir.rglob("*") if p.is_file())
    deleted = [path for path in files if run.layout.is_local_only(run.layout.key(path))]
    for path in deleted:
        path.unlink()
    for folder in sorted((p for p in run.dir.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(folder.iterdir()):
            folder.rmdir()
    return run.record_left_out(deleted)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m patarm_kit.report.summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("--migrate", metavar="RUN", help="add figure data, tables, SUMMARY.md and output records to an older run")
    parser.add_argument("--publish", metavar="RUN", help="delete the files a committed run leaves out and record them")
    parser.add_argument("--update-readme", metavar="README", help="rewrite the README's summary blocks from their runs")
    args = parser.parse_args(argv)
    if not (args.migrate or args.publish or args.update_readme):
        parser.error("give --migrate RUN, --publish RUN and/or --update-readme README")
    try:
        if args.publish:
            print(f"published {args.publish}: {len(publish(args.publish))} files left out and recorded (manifest left_out)")
        if args.migrate:
            note = migrate(args.migrate)
            print(f"migrated {args.migrate}: added {', '.join(note['added'])}; tables {note['regenerated']}; "
                  f"{len(note['outputs'])} files recorded")
        if args.update_readme:
            readme = Path(args.update_readme)
            atomic_write_text(readme, render_readme(readme.read_text(encoding="utf-8"), readme.resolve().parent))
            print(f"updated the summary blocks of {readme}")
    except (OSError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
