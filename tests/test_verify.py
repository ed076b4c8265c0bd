"""`patarm-kit verify` and `compare` on a real run folder made without a model (see conftest.small_run)."""

import json
import math
from pathlib import Path

from typer.testing import CliRunner

from patarm_kit.cli import app
from patarm_kit.verify import value_differences, verify_run

runner = CliRunner()


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
    assert "1 differences" in result.output


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
    ]


def test_verify_reports_missing_judgments_and_missing_data(run_copy, tmp_path):
    (run_copy / "eval" / "random__rewardbench.judgments.jsonl").unlink()
    report = verify_run(run_copy, data_dir=str(tmp_path / "elsewhere"))
    fields = {(d.file, d.field) for d in report.differences}
    assert ("eval/random__rewardbench.json", "(file)") in fields
    assert ("manifest.json", "data.rm-bench.files.rm-bench/chat_filtered.json") in fields
    assert not report.ok and "FAILED" in report.summary()


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
