"""SUMMARY.md and `patarm-kit summary`: both tie rules, tie and invalid shares and truncation,
checked against counts made by hand from the stored judgments of the committed reference run."""

import json
import shutil
from collections import defaultdict

import pytest
from typer.testing import CliRunner

from patarm_kit.cli import app
from patarm_kit.config.loader import REPO_ROOT, load_config
from patarm_kit.report import figures, tables
from patarm_kit.report.summary import (
    migrate,
    publish,
    readme_block,
    render_readme,
    render_summary,
    summary_json,
    write_summary,
)
from patarm_kit.report.verify import verify_run
from patarm_kit.runs.files import RunError, read_json, sha256_of
from patarm_kit.runs.run import Run

REFERENCE = REPO_ROOT / "results" / "reference-cpu"
runner = CliRunner()


@pytest.fixture(scope="module")
def reference_facts():
    return summary_json(REFERENCE)


def row_of(facts, judge, bench):
    return next(r for r in facts["rows"] if (r["judge"], r["bench"]) == (judge, bench))


def judgments_of(judge, bench):
    name = f"{judge}__{bench.replace(':', '-')}.judgments.jsonl"
    return [json.loads(line) for line in (REFERENCE / "eval" / name).read_text().splitlines()]


@pytest.mark.parametrize("judge", ["length", "bt", "base", "sft", "par"])
def test_both_tie_rules_on_held_out_pairs_match_a_count_by_hand(reference_facts, judge):
    rows = judgments_of(judge, "pairs:hh-rlhf")
    scores = defaultdict(dict)
    for row in rows:
        scores[row["pair_id"]][row["side"]] = row["score"]
    wins = sum(1 for s in scores.values() if None not in s.values() and s["chosen"] > s["rejected"])
    ties = sum(1 for s in scores.values() if None in s.values() or s["chosen"] == s["rejected"])
    n = len(scores)
    facts = row_of(reference_facts, judge, "pairs:hh-rlhf")
    assert facts["n"] == n == load_config("cpu").eval.limit["pairs:hh-rlhf"] == 128
    assert facts["acc"]["zero"] == pytest.approx(wins / n)
    assert facts["acc"]["half"] == pytest.approx((wins + ties / 2) / n)
    assert facts["tie_share"] == pytest.approx(ties / n)
    assert facts["invalid_share"] == pytest.approx(sum(r["score"] is None for r in rows) / len(rows))
    assert facts["truncated_inputs"] == sum(bool(r["input_truncated"]) for r in rows) and facts["judgments"] == len(rows)


def test_rmbench_tie_share_counts_the_nine_comparisons_of_each_prompt(reference_facts):
    scores = defaultdict(dict)
    for row in judgments_of("sft", "rmbench"):
        scores[row["pair_id"]][row["side"]] = row["score"]
    def tie(a, b):  # equal scores, or an invalid judgment on either side
        return a is None or b is None or a == b

    shares = [sum(tie(s[f"chosen_{i}"], s[f"rejected_{j}"]) for i in range(3) for j in range(3)) / 9 for s in scores.values()]
    facts = row_of(reference_facts, "sft", "rmbench")
    assert facts["tie_share"] == pytest.approx(sum(shares) / len(shares))
    assert facts["acc"]["zero"] < facts["acc"]["half"]
    assert set(facts["extras"]) == {"rm_easy", "rm_normal", "rm_hard"}


def test_the_runs_own_rule_gives_its_stored_numbers(reference_facts):
    stored = read_json(REFERENCE / "metrics" / "04_benchmarks.json")
    assert reference_facts["ties"] == "half"
    for row in stored["table"]:
        facts = row_of(reference_facts, row["judge"], row["bench"])
        assert (facts["acc"]["half"], facts["ci95"]["half"], facts["n"]) == (row["acc"], [row["ci95_low"], row["ci95_high"]], row["n"])
    assert len(reference_facts["rows"]) == len(stored["table"])
    for ours, theirs in zip(reference_facts["paired"], stored["paired"]):
        assert ours == pytest.approx(theirs)
    base = row_of(reference_facts, "base", "rewardbench")  # never parses: all ties, ½ under one rule, 0 under the other
    assert (base["acc"], base["tie_share"], base["invalid_share"]) == ({"half": 0.5, "zero": 0.0}, 1.0, 1.0)


def test_summary_markdown_has_a_table_per_bench_and_the_paired_differences(reference_facts):
    text = render_summary(reference_facts)
    assert text.startswith("# Summary of run `reference-cpu`\n")
    assert [line for line in text.splitlines() if line.startswith("## ")] == [
        "## RM-Bench", "## RewardBench", "## held-out hh-rlhf", "## Paired differences"]
    assert "| `base` | 80 | 50.0 [50.0, 50.0] | 0.0 [0.0, 0.0] | 100.0 | 100.0 | 25 of 160 |" in text
    assert "| `par` − `sft` | held-out hh-rlhf | greedy | 128 | -5.5 [-11.3, +0.4] | 0.074 |" in text


def test_summary_command_prints_the_table_or_json(small_run):
    text = runner.invoke(app, ["summary", str(small_run)])
    assert text.exit_code == 0 and text.output == render_summary(summary_json(small_run))
    as_json = runner.invoke(app, ["summary", str(small_run), "--json"])
    assert as_json.exit_code == 0 and json.loads(as_json.output) == summary_json(small_run)
    assert not (small_run / "SUMMARY.md").exists()  # printing writes nothing


def test_summary_command_on_a_folder_that_is_not_a_run(tmp_path):
    result = runner.invoke(app, ["summary", str(tmp_path)])
    assert result.exit_code == 2 and "not a run directory" in result.output


def test_write_summary_and_the_readme_block(run_copy, tmp_path):
    path = write_summary(run_copy)
    assert path == run_copy / "SUMMARY.md" and path.read_text() == render_summary(summary_json(run_copy))
    block = readme_block(path.read_text(), "results/small")
    assert block.startswith("From [`results/small/SUMMARY.md`](results/small/SUMMARY.md)")
    assert "\n### RM-Bench\n" in block and "# Summary" not in block
    (tmp_path / "results").mkdir()
    shutil.copytree(run_copy, tmp_path / "results" / "small")
    readme = "# Kit\n\nBefore.\n<!-- summary:begin results/small -->\nold table\n<!-- summary:end -->\nAfter.\n"
    rendered = render_readme(readme, tmp_path)
    assert rendered == f"# Kit\n\nBefore.\n<!-- summary:begin results/small -->\n{block}<!-- summary:end -->\nAfter.\n"
    assert render_readme(rendered, tmp_path) == rendered


def test_migrate_adds_figure_data_and_summary_and_records_every_file_once(run_copy):
    figures.plot_benchmark_bars(run_copy)
    tables.benchmark_table(run_copy)
    drawn = (run_copy / "figures" / "06_benchmark_bars.csv").read_text()
    (run_copy / "figures" / "06_benchmark_bars.csv").unlink()  # as a run drawn before figure data was saved
    (run_copy / "README.md").write_text("What this run is (prose, edited at will).\n")
    note = migrate(run_copy)
    assert note["added"] == ["figures/06_benchmark_bars.csv", "SUMMARY.md"]
    assert (run_copy / "figures" / "06_benchmark_bars.csv").read_text() == drawn
    assert note["regenerated"] == {"tables/06_benchmarks.csv": "unchanged", "tables/06_benchmarks.md": "unchanged",
                                   "tables/06_paper_vs_ours.csv": "added", "tables/06_paper_vs_ours.md": "added"}
    manifest = Run.open(run_copy).manifest()
    files = {p.relative_to(run_copy).as_posix() for p in run_copy.rglob("*") if p.is_file()} - {"manifest.json", "README.md"}
    assert manifest["migrated"]["outputs"] == {key: sha256_of(run_copy / key) for key in sorted(files)}
    assert manifest["migrated"]["at"] and "figures not redrawn" in manifest["migrated"]["note"]
    assert verify_run(run_copy).ok
    with pytest.raises(RunError, match="already migrated"):
        migrate(run_copy)


def test_a_run_without_evaluations_says_so(tmp_path):
    from patarm_kit.config.loader import load_config

    empty = Run.create("empty", load_config("smoke"), results_dir=tmp_path).dir
    assert "No evaluations in this run" in render_summary(summary_json(empty))
    assert summary_json(empty)["rows"] == [] and summary_json(empty)["paired"] == []



def test_publish_leaves_out_the_local_files_records_why_and_verify_still_passes(run_copy):
    pair_files = sorted(p.relative_to(run_copy).as_posix() for p in (run_copy / "pairs").iterdir())
    assert pair_files  # stage 01 wrote them; a committed run leaves them out
    left_out = publish(run_copy)
    assert sorted(left_out) == pair_files and not (run_copy / "pairs").exists()
    assert set(left_out.values()) == {"the stage-01 pair files, rebuilt from the data by notebook 01"}
    assert Run.open(run_copy).manifest()["left_out"] == left_out
    report = verify_run(run_copy)
    assert report.ok and any(note.startswith("pairs/") and "left out" in note for note in report.notes)


def test_summary_and_compare_refuse_an_incomplete_or_damaged_run(run_copy, small_run):
    """A recorded evaluation missing, a metrics file of the wrong shape, an eval stage that did not
    finish: each is one error naming the file or run, never a summary that quietly drops a judge."""
    from typer.testing import CliRunner

    from patarm_kit.cli import app

    runner = CliRunner()
    metrics = run_copy / "eval" / "random__rmbench.json"
    original = metrics.read_bytes()
    metrics.unlink()
    for command in (["summary", str(run_copy)], ["compare", str(small_run), str(run_copy)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2 and "random__rmbench.json: recorded by the eval stage but missing" in result.output
    metrics.write_text("[1, 2]")  # valid JSON of the wrong shape
    result = runner.invoke(app, ["summary", str(run_copy)])
    assert result.exit_code == 2 and "random__rmbench.json: not an evaluation's metrics file" in result.output
    metrics.write_bytes(original)
    manifest = json.loads((run_copy / "manifest.json").read_text())
    manifest["stages"]["eval"]["status"] = "failed"
    (run_copy / "manifest.json").write_text(json.dumps(manifest))
    result = runner.invoke(app, ["summary", str(run_copy)])
    assert result.exit_code == 2 and "the eval stage is recorded 'failed'" in result.output
