"""`patarm-kit verify` and `compare` on real run folders: a small one made without a model
(conftest.small_run) and a copy of the committed reference run, tampered with the ways a hand
edit would: each tamper must fail verify and name the file."""

import csv
import io
import json
import math
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from patarm_kit.cli import app
from patarm_kit.config.loader import REPO_ROOT
from patarm_kit.report.differences import table_differences, value_differences
from patarm_kit.report.summary import migrate, publish
from patarm_kit.report.verify import verify_run
from patarm_kit.runs.files import sha256_of
from patarm_kit.runs.run import Run

runner = CliRunner()
REFERENCE = REPO_ROOT / "results" / "reference-cpu"


def edit_json(path: Path, change) -> None:
    """Tamper with a results file the way a hand edit would."""
    payload = json.loads(path.read_text())
    change(payload)
    path.write_text(json.dumps(payload))


def test_verify_passes_on_an_untouched_run(small_run):
    result = runner.invoke(app, ["verify", str(small_run)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK")
    checked = verify_run(small_run).checked
    assert checked["metrics files"] == 7  # 2 judges x 3 benches + the votes-curve file
    assert checked["table rows"] == 6 and checked["paired rows"] == 3 and checked["votes_curve rows"] == 2
    assert checked["data files"] >= 14  # hh-rlhf 4, finegrained 1, rm-bench 4, llmbar 5


def test_verify_names_the_file_and_field_of_a_changed_accuracy(run_copy):
    edit_json(run_copy / "eval" / "length__rmbench.json", lambda m: m.update(acc=m["acc"] + 0.01))
    result = runner.invoke(app, ["verify", str(run_copy)])
    assert result.exit_code == 1
    assert "eval/length__rmbench.json: acc: stored" in result.output
    assert "eval/length__rmbench.json: (file): sha256" in result.output  # and the stage's record of it
    assert "2 differences" in result.output


def test_verify_catches_a_changed_data_hash(run_copy):
    edit_json(run_copy / "manifest.json", lambda m: m["data"]["llmbar"]["files"].update({"llmbar/Natural.json": "0" * 64}))
    result = runner.invoke(app, ["verify", str(run_copy)])
    assert result.exit_code == 1
    assert "manifest.json: data.llmbar.files.llmbar/Natural.json: recorded sha256 000" in result.output


def test_verify_catches_a_changed_config(run_copy):
    edit_json(run_copy / "manifest.json", lambda m: m["config"]["eval"].update(limit=5))
    report = verify_run(run_copy)
    assert [(d.file, d.field) for d in report.differences] == [("manifest.json", "config_fingerprint")]


def test_verify_checks_the_stage_04_summary(run_copy):
    def change(summary):
        summary["table"][0]["ci95_high"] = 0.99
        summary["paired"][0]["diff"] += 0.1
        summary["votes_curve"][1]["acc"] = 0.0

    edit_json(run_copy / "metrics" / "04_benchmarks.json", change)
    report = verify_run(run_copy)
    assert [(d.file, d.field) for d in report.differences] == [
        ("metrics/04_benchmarks.json", "table[0].ci95_high"),
        ("metrics/04_benchmarks.json", "paired[0].diff"),
        ("metrics/04_benchmarks.json", "votes_curve[1].acc"),
        ("metrics/04_benchmarks.json", "(file)"),  # and its sha256 is not the one the eval stage recorded
    ]


def test_verify_reports_missing_judgments_and_missing_data(run_copy, tmp_path):
    (run_copy / "eval" / "random__rewardbench.judgments.jsonl").unlink()
    report = verify_run(run_copy, data_dir=str(tmp_path / "elsewhere"))
    fields = {(d.file, d.field) for d in report.differences}
    assert ("eval/random__rewardbench.json", "(file)") in fields
    assert ("manifest.json", "data.rm-bench.files.rm-bench/chat_filtered.json") in fields
    assert not report.ok and "FAILED" in report.summary()


def test_a_runs_evaluations_read_its_stage_one_files_and_verify_checks_them(run_copy):
    """One pipe: every evaluation of the run judged a pairs/bench-* file of stage 01, recorded by hash."""
    recorded = {key for path in (run_copy / "eval").glob("*__*.json") if not path.name.endswith("judgments.jsonl")
                for key in json.loads(path.read_text())["data_files"]}
    assert recorded == {"<run>/pairs/bench-rmbench.jsonl", "<run>/pairs/bench-rewardbench.jsonl",
                        "<run>/pairs/bench-pairs-hh-rlhf.jsonl"}
    pair_file = run_copy / "pairs" / "bench-rewardbench.jsonl"
    original = pair_file.read_bytes()
    pair_file.write_bytes(original + b"\n")
    fields = {(d.file, d.field) for d in verify_run(run_copy).differences}
    assert ("eval/random__rewardbench.json", "data_files.<run>/pairs/bench-rewardbench.jsonl") in fields
    pair_file.unlink()
    assert ("eval/random__rewardbench.json", "data_files.<run>/pairs/bench-rewardbench.jsonl") in {
        (d.file, d.field) for d in verify_run(run_copy).differences}
    pair_file.write_bytes(original)
    publish(run_copy)  # a published run leaves the pair files out on purpose: a note, not a difference
    report = verify_run(run_copy)
    assert report.ok, report.summary()
    assert "pairs/bench-rewardbench.jsonl: left out (the stage-01 pair files, rebuilt from the data by notebook 01)" in report.notes


def test_compare_reports_a_changed_accuracy_and_config_key(small_run, run_copy):
    edit_json(run_copy / "eval" / "random__rmbench.json", lambda m: m.update(acc=0.75))
    edit_json(run_copy / "manifest.json", lambda m: m["config"]["eval"].update(limit=5))
    result = runner.invoke(app, ["compare", str(small_run), str(run_copy)])
    assert result.exit_code == 0
    assert "eval/random__rmbench.json: acc: A " in result.output and ", B 0.75" in result.output
    assert "manifest.json: config.eval.limit: A 4, B 5" in result.output
    assert "length__rmbench" not in result.output  # unchanged files are not listed
    same = runner.invoke(app, ["compare", str(small_run), str(small_run)])
    assert "no differences" in same.output


def test_compare_rejects_a_folder_that_is_not_a_run(small_run, tmp_path):
    result = runner.invoke(app, ["compare", str(small_run), str(tmp_path)])
    assert result.exit_code == 2 and "not a run directory" in result.output


def test_value_differences_tolerance_and_missing_values():
    labels = ("stored", "recomputed")
    assert value_differences({"a": 0.5}, {"a": 0.5 + 1e-13}, "f.json", labels) == []
    assert [str(d) for d in value_differences({"a": [0.5]}, {"a": [0.5 + 1e-9]}, "f.json", labels)] == [
        f"f.json: a[0]: stored 0.5, recomputed {0.5 + 1e-9!r}"]
    assert value_differences({"x": math.nan, "y": None}, {}, "f.json", labels) == []  # pandas' NaN = no value
    assert value_differences({"ok": True}, {"ok": 1}, "f.json", labels)  # a flag is not a number


# ---------------------------------------------------------------- tampering with the reference run


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """A copy of the committed reference run, migrated first if the committed one is not yet
    (figure data, SUMMARY.md and output records). Read-only: tests tamper with `reference_copy`."""
    run = Path(shutil.copytree(REFERENCE, tmp_path_factory.mktemp("reference") / "reference-cpu"))
    if "migrated" not in Run.open(run).manifest() and not any("outputs" in s for s in Run.open(run).manifest()["stages"].values()):
        migrate(run)
    return run


@pytest.fixture
def reference_copy(reference, tmp_path) -> Path:
    return Path(shutil.copytree(reference, tmp_path / "reference-cpu"))


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text and old != new, (path, old)
    path.write_text(text.replace(old, new, 1))


def first_row(path: Path) -> dict[str, str]:
    return next(csv.DictReader(io.StringIO(path.read_text())))


def flip_a_sign_in_the_paper_table(run: Path) -> str:
    path = run / "tables" / "05_paper_vs_ours.csv"
    row, ours = next((i, r["ours"]) for i, r in enumerate(csv.DictReader(io.StringIO(path.read_text())), start=1)
                     if r["ours"] and float(r["ours"]) != 0)
    replace_once(path, f",{ours},", f",{ours[1:] if ours.startswith('-') else '-' + ours},")
    return f"tables/05_paper_vs_ours.csv: row {row} ("


def edit_a_cell_of_the_benchmark_markdown(run: Path) -> str:
    path = run / "tables" / "05_benchmarks.md"
    row = path.read_text().splitlines()[2]
    cells = row.split(" | ")
    replace_once(path, row, " | ".join([*cells[:3], "0.99", *cells[4:]]))  # the first row's acc
    return "tables/05_benchmarks.md: row 1 ("


def edit_a_number_in_figure_data(run: Path) -> str:
    path = run / "figures" / "05_benchmark_bars.csv"
    replace_once(path, f",{first_row(path)['ci95_high']},", ",0.99,")
    return "figures/05_benchmark_bars.csv: row 1 ("


def edit_the_summary(run: Path) -> str:
    replace_once(run / "SUMMARY.md", "| `length` | ", "| `length` | 1")
    return "SUMMARY.md: line "


def make_a_judgments_text_disagree_with_its_score(run: Path) -> str:
    path = run / "eval" / "par__pairs-hh-rlhf.judgments.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    row = json.loads(lines[0])
    assert row["score"] is not None and f"<score>{row['score']}</score>" in row["text"]
    row["text"] = row["text"].replace(f"<score>{row['score']}</score>", f"<score>{row['score'] % 10 + 1}</score>")
    path.write_text(json.dumps(row) + "\n" + "".join(lines[1:]))
    return "eval/par__pairs-hh-rlhf.judgments.jsonl: line 1 ("


def delete_the_benchmarks_summary(run: Path) -> str:
    (run / "metrics" / "04_benchmarks.json").unlink()
    return "metrics/04_benchmarks.json: (file): missing"


def delete_the_manifests_data_section(run: Path) -> str:
    manifest = json.loads((run / "manifest.json").read_text())
    del manifest["data"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    return "manifest.json: data.hh-rlhf: no data hashes"


def delete_an_expected_output(run: Path) -> str:
    (run / "figures" / "05_votes_curve.png").unlink()
    return "figures/05_votes_curve.png: (file): missing"


@pytest.mark.parametrize("tamper", [
    flip_a_sign_in_the_paper_table, edit_a_cell_of_the_benchmark_markdown, edit_a_number_in_figure_data,
    edit_the_summary, make_a_judgments_text_disagree_with_its_score, delete_the_benchmarks_summary,
    delete_the_manifests_data_section, delete_an_expected_output,
], ids=lambda tamper: tamper.__name__)
def test_verify_fails_on_a_tampered_reference_run_and_names_the_file(reference_copy, tamper):
    named = tamper(reference_copy)
    result = runner.invoke(app, ["verify", str(reference_copy)])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("FAILED") and named in result.output, result.output


def test_the_untouched_reference_copy_passes_with_everything_checked(reference):
    report = verify_run(reference)
    assert report.ok, report.summary()
    assert {"SUMMARY.md", "tables/05_benchmarks.csv", "tables/05_paper_vs_ours.md", "figures/05_rmbench_matrices.csv",
            "figures/05_score_shift.csv"} <= report.rebuilt
    assert report.checked["judgments re-parsed"] > 1000 and report.checked["recorded files"] > 50


def test_a_file_changed_after_its_stage_recorded_it_is_a_difference(reference_copy):
    figure = reference_copy / "figures" / "05_benchmark_bars.svg"  # recorded by the figures stage, not rebuilt by verify
    figure.write_text(figure.read_text().replace("<svg", "<svg data-edited='yes'", 1))
    assert [(d.file, d.field) for d in verify_run(reference_copy).differences] == [("figures/05_benchmark_bars.svg", "(file)")]


def test_a_stage_run_after_the_migration_records_its_files_anew(reference_copy):
    figure = reference_copy / "figures" / "05_votes_curve.png"
    figure.write_bytes(figure.read_bytes() + b"redrawn")
    assert [d.file for d in verify_run(reference_copy).differences] == ["figures/05_votes_curve.png"]
    manifest = json.loads((reference_copy / "manifest.json").read_text())
    manifest["stages"]["figures"] = {"status": "done", "outputs": {"figures/05_votes_curve.png": sha256_of(figure)}}
    (reference_copy / "manifest.json").write_text(json.dumps(manifest))
    # the file is the stage's own now; the notebook that showed the stage's earlier files is what is out of date
    assert [(d.file, d.field) for d in verify_run(reference_copy).differences] == [("notebooks/05_figures.ipynb", "(notebook)")]


def test_the_preview_metrics_are_rebuilt_from_the_preview_judgments(reference_copy):
    path = reference_copy / "metrics" / "02_base_judge.json"
    replace_once(path, '"parse_rate": 0.0', '"parse_rate": 0.5')
    fields = [(d.file, d.field) for d in verify_run(reference_copy).differences]
    assert ("metrics/02_base_judge.json", "judging.parse_rate") in fields


def test_a_file_left_out_on_purpose_is_a_note(reference_copy):
    (reference_copy / "figures" / "05_votes_curve.png").unlink()
    manifest = json.loads((reference_copy / "manifest.json").read_text())
    manifest["left_out"] = {**manifest.get("left_out", {}), "figures/": "figures are not kept in this copy"}
    (reference_copy / "manifest.json").write_text(json.dumps(manifest))
    report = verify_run(reference_copy)
    assert report.ok, report.summary()
    assert "figures/05_votes_curve.png: left out (figures are not kept in this copy)" in report.notes


def test_the_benchmarks_summary_may_be_absent_only_when_no_record_says_eval_ran(run_copy):
    (run_copy / "metrics" / "04_benchmarks.json").unlink()
    manifest = json.loads((run_copy / "manifest.json").read_text())
    for stages in ({}, {"eval": {"status": "done"}}):  # no records, then a record without outputs (an older run)
        (run_copy / "manifest.json").write_text(json.dumps({**manifest, "stages": stages}))
        report = verify_run(run_copy)
        assert report.ok == (stages == {}), report.summary()
    assert [(d.file, d.detail) for d in report.differences] == [("metrics/04_benchmarks.json", "missing, but the eval stage ran")]
    assert any("stage records without outputs" in note and "eval" in note for note in report.notes)


def test_length_scores_are_checked_against_the_stored_responses(run_copy):
    """With the run's pair files kept (the data stage writes them), a length judgment's score must be its response's length."""
    judgments = run_copy / "eval" / "length__rmbench.judgments.jsonl"
    rows = [json.loads(line) for line in judgments.read_text().splitlines()]
    length_judgments = sum(len(path.read_text().splitlines()) for path in run_copy.glob("eval/length__*.judgments.jsonl"))
    assert verify_run(run_copy).checked["judgments re-scored"] == length_judgments
    rows[0]["score"] += 1
    judgments.write_text("".join(json.dumps(row) + "\n" for row in rows))
    fields = {(d.file, d.field) for d in verify_run(run_copy).differences}
    assert ("eval/length__rmbench.judgments.jsonl", f"line 1 ({rows[0]['pair_id']}, {rows[0]['side']}, sample 0).score") in fields


def test_a_split_left_empty_holds_no_responses_and_stops_nothing(run_copy):
    """data.split_fractions can leave a split empty (the paper profile on the stand-ins' few pairs): stage 01
    writes an empty file, and verify reads no responses from it instead of refusing it as bad data."""
    test_split = run_copy / "pairs" / "test.jsonl"
    test_split.write_text("")
    report = verify_run(run_copy)
    assert report.checked["judgments re-scored"] > 0
    assert {d.file for d in report.differences} == {"pairs/test.jsonl"}, "only the emptied file differs from its record"


def test_table_differences_name_row_and_column():
    stored = "judge,acc\nlength,0.5\nrandom,0.25\n"
    assert table_differences("t.csv", stored, stored) == []
    assert [str(d) for d in table_differences("t.csv", "judge,acc\nlength,-0.5\nrandom,0.25\n", stored)] == [
        "t.csv: row 1 (length).acc: stored '-0.5', rebuilt '0.5'"]
    assert [d.field for d in table_differences("t.csv", stored + "bt,0.1\n", stored)] == ["(rows)"]
    assert [d.field for d in table_differences("t.csv", stored.replace("\n", "\r\n"), stored)] == ["(text)"]
    markdown = "| judge | acc |\n|---|---|\n| a\\|b | 0.5 |\n"
    assert [str(d) for d in table_differences("t.md", markdown.replace("0.5", "0.6"), markdown, markdown=True)] == [
        "t.md: row 1 (a\\|b).acc: stored '0.6', rebuilt '0.5'"]
