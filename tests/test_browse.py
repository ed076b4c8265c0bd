"""The judgment browser (`patarm-kit show`, report/browse.py) on the committed runs, read-only: what it prints
for an item, and that every outcome it names is the one the run's metrics files scored."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from patarm_kit.cli import app
from patarm_kit.evaluation.evaluate import read_eval_metrics
from patarm_kit.report import browse
from patarm_kit.report.summary import summary_json
from patarm_kit.runs.layout import RunLayout

RESULTS = Path(__file__).resolve().parents[1] / "results"
REFERENCE, ABLATIONS = RESULTS / "reference-cpu", RESULTS / "ablations-cpu"
VERDICT = re.compile(r"^judge (\S+): (chosen preferred|rejected preferred|tie|invalid|mixed) \(outcome ([0-9.]+)", re.M)
VALUE = {"chosen preferred": 1.0, "rejected preferred": 0.0, "tie": 0.5, "invalid": 0.5}  # under ties count ½


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def items_of(output: str) -> list[str]:
    return output.split("\n=== item ")[1:]


@pytest.fixture(scope="module")
def hh() -> browse.Browse:
    return browse.browse(REFERENCE, "pairs:hh-rlhf")


@pytest.fixture(scope="module")
def verifiable() -> browse.Browse:
    return browse.browse(ABLATIONS, "pairs:verifiable-if")


def test_show_prints_an_item_with_prompt_responses_rubric_scores_and_outcomes():
    result = invoke("show", REFERENCE, "--bench", "pairs:hh-rlhf", "--judge", "length", "--judge", "par", "--n", "1")
    assert result.exit_code == 0, result.output
    [item] = items_of(result.output)
    metrics = {j: read_eval_metrics(RunLayout(REFERENCE).eval_metrics(j, "pairs:hh-rlhf")) for j in ("length", "par")}
    pair_id = item.split(" ", 4)[3]
    assert pair_id == metrics["length"]["items"][0]["pair_id"]  # the first judge's order
    for heading in ("prompt:\n    user: ", "response chosen:\n    ", "response rejected:\n    ", "rubric for task chat"):
        assert heading in item
    verdicts = {judge: (label, float(value)) for judge, label, value in VERDICT.findall(item)}
    assert set(verdicts) == {"length", "par"}
    for judge, (label, value) in verdicts.items():
        stored = next(i["outcome"] for i in metrics[judge]["items"] if i["pair_id"] == pair_id)
        assert value == pytest.approx(stored) and VALUE[label] == stored
    assert re.search(r"^  chosen: score \d+\n  rejected: score \d+$", item, re.M)  # length: a number per side
    assert re.search(r"^  chosen: score \d+ \(expected [0-9.]+\)\n    <criteria>", item, re.M)  # par: its text under it


@pytest.mark.parametrize("run, bench", [(REFERENCE, "pairs:hh-rlhf"), (ABLATIONS, "pairs:verifiable-if"),
                                        (ABLATIONS, "pairs:verifiable-if-transfer")])
def test_outcomes_add_up_to_the_stored_accuracy_under_both_tie_rules(run, bench):
    view = browse.browse(run, bench)
    rows = {row["judge"]: row for row in summary_json(run)["rows"] if row["bench"] == bench}
    for judge in view.judges:
        metrics = read_eval_metrics(RunLayout(run).eval_metrics(judge, bench))
        labels = [item.outcome_of(judge) for item in view.items if judge in item.verdicts]
        assert len(labels) == metrics["n"]
        stored = {i["pair_id"]: i["outcome"] for i in metrics["items"]}
        assert all(item.verdicts[judge].outcome == stored[item.pair_id] for item in view.items if judge in item.verdicts)
        if "mixed" in labels:  # the pairwise judge's two orders went different ways: no single name
            continue
        half = sum(VALUE[label] for label in labels) / len(labels)
        zero = labels.count("chosen preferred") / len(labels)
        assert half == pytest.approx(metrics["acc"], abs=1e-12)  # the metrics file's own rule, ties count ½
        if judge in rows:  # the summary's other tie rule (the votes-curve evaluation has no row)
            assert zero == pytest.approx(rows[judge]["acc"]["zero"], abs=1e-12)


def test_rmbench_outcomes_follow_the_scores_shown():
    """The length judge's nine style comparisons per prompt, read off the scores the browser shows."""
    view = browse.browse(REFERENCE, "rmbench", ["length"])
    for item in view.items:
        verdict = item.verdicts["length"]
        score = {j.side: j.score for j in verdict.judgments}
        pairs = [(score[f"chosen_{i}"], score[f"rejected_{k}"]) for i in range(3) for k in range(3)]
        wins, losses = sum(c > r for c, r in pairs), sum(c < r for c, r in pairs)
        assert verdict.outcome == pytest.approx((wins + (9 - wins - losses) / 2) / 9)
        expected = ("chosen preferred" if wins == 9 else "rejected preferred" if losses == 9 else "tie"
                    if wins == losses == 0 else "mixed")
        assert verdict.label == expected
        assert set(item.responses) == set(score)  # the six style variants the judge scored


def test_disagree_keeps_only_items_whose_judges_differ(hh):
    result = invoke("show", REFERENCE, "--bench", "pairs:hh-rlhf", "--judge", "length", "--judge", "par",
                    "--disagree", "--n", "1000")
    assert result.exit_code == 0, result.output
    printed = items_of(result.output)
    wanted = [item for item in browse.select(hh.items, judges=["length", "par"])
              if item.outcome_of("length") != item.outcome_of("par")]
    assert len(printed) == len(wanted) > 0
    for block, item in zip(printed, wanted):
        assert item.pair_id in block.splitlines()[0]
        found = {judge: label for judge, label, _ in VERDICT.findall(block)}
        assert set(found) == {"length", "par"} and found["length"] != found["par"]


def test_n_caps_the_items(hh):
    result = invoke("show", REFERENCE, "--bench", "pairs:hh-rlhf", "--judge", "random", "--n", "3")
    assert result.exit_code == 0, result.output
    assert len(items_of(result.output)) == 3 and "showing 3 items" in result.output
    assert [b.split(" ", 4)[3] for b in items_of(result.output)] == [i.pair_id for i in hh.items[:3]]


def test_long_responses_are_cut_with_a_visible_marker(hh):
    item = hh.items[0]
    left = len(item.responses["chosen"]) - 20
    assert f"    {item.responses['chosen'][:20]}… [cut: {left:,} more characters]" in browse.render(hh, [item], max_chars=20)
    result = invoke("show", REFERENCE, "--bench", "rmbench", "--judge", "length", "--n", "1")  # the CLI shows 600 characters
    detailed = browse.browse(REFERENCE, "rmbench", ["length"]).items[0].responses["chosen_1"]
    shown = f"{detailed[:600]}… [cut: {len(detailed) - 600:,} more characters]"
    assert len(detailed) > 600 and "\n".join("    " + line for line in shown.splitlines()) in result.output


def test_several_samples_per_response_are_shown_as_such(hh):
    result = invoke("show", REFERENCE, "--bench", "pairs:hh-rlhf", "--judge", "par-votes4", "--n", "1")
    assert result.exit_code == 0, result.output
    for side in ("chosen", "rejected"):
        assert all(f"  {side}, sample {k}: " in result.output for k in range(4))
        assert f"  {side}: 4 samples, voted score " in result.output


def test_a_run_without_pair_files_or_data_says_so_in_one_line(tmp_path):
    view = browse.browse(REFERENCE, "rmbench", ["length"], data_dir=tmp_path)
    assert len(view.notes) == 1 and view.notes[0].startswith("prompts and responses not shown: the run keeps no ")
    assert all(item.prompt is None and item.verdicts["length"].judgments for item in view.items)


def test_accuracy_per_instruction_type_includes_the_length_probe(verifiable):
    table = browse.type_accuracy(verifiable)
    assert len(table) == 11 and table.loc["all", "n"] == 450 and table.drop("all")["n"].sum() == 450
    for judge in verifiable.judges:
        acc = read_eval_metrics(RunLayout(ABLATIONS).eval_metrics(judge, "pairs:verifiable-if"))["acc"]
        assert table.loc["all", judge] == round(100 * acc, 1)
    decided = table["length"].drop("all").isin([0.0, 100.0])
    assert decided.sum() == 5  # the finding: the length probe alone decides five of the ten types


@pytest.mark.parametrize("args, named", [
    (["--bench", "nope"], ["'nope'", "rmbench"]),
    (["--bench", "rmbench", "--judge", "pairwise"], ["'pairwise'", "rmbench"]),
    (["--bench", "rmbench", "--judge", "par", "--disagree"], ["--disagree"]),
    (["--bench", "rmbench", "--n", "0"], ["--n"]),
])
def test_bad_input_is_one_error_line_and_exit_2(args, named):
    result = invoke("show", REFERENCE, *args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert all(name in lines[0] for name in named), lines[0]


def test_a_folder_that_is_no_run_is_one_error_line(tmp_path):
    result = invoke("show", tmp_path, "--bench", "rmbench")
    assert result.exit_code == 2 and result.output.strip() == f"error: {tmp_path}: no manifest.json (not a run directory)"
