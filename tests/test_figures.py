"""Notebook 06's figures and tables: drawn from results files, skipped (never invented) when one is missing."""

import json
import math
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import yaml

from patarm_kit.config.loader import REPO_ROOT, load_config
from patarm_kit.evaluation.evaluate import evaluate
from patarm_kit.evaluation.stats import p_text
from patarm_kit.report import figures, paper, summary, tables
from patarm_kit.report.show import show
from patarm_kit.runs.files import read_json, read_jsonl
from patarm_kit.runs.layout import RunLayout
from patarm_kit.runs.run import Run

FIGURES = {
    "06_par_curves": figures.plot_par_curves,
    "06_benchmark_bars": figures.plot_benchmark_bars,
    "06_rmbench_matrices": figures.plot_rmbench_matrices,
    "06_votes_curve": figures.plot_votes_curve,
    "06_score_shift": figures.plot_score_shift,
}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def trained_run(run_copy):
    """The small run plus what training would add: a PAR metrics file in training/grpo.py's format, and
    judges labelled base and par. Their scores here come from the random and length judges, so
    the files are real evaluations; only the names stand in for the trained models."""
    rows = [{"step": step, "seconds_per_step": 2.0, "par/reward_mean": 0.25 * step, "par/pair_accuracy": 0.5,
             "par/parse_rate": 0.9, "par/completion_length_mean": 80.0, "par/group_reward_std_mean": 0.3,
             "par/zero_std_group_share": 0.5} for step in (1, 2, 3)]
    (run_copy / "par").mkdir()
    (run_copy / "par" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = Run.open(run_copy).config()
    for label, judge in (("base", "random"), ("par", "length")):
        for bench in ("rmbench", "rewardbench", "pairs:hh-rlhf"):
            evaluate(config, judge, bench, RunLayout(run_copy).eval_metrics(label, bench), 4, label=label)
    held_out = read_jsonl(run_copy / "eval" / "par__pairs-hh-rlhf.judgments.jsonl")
    (run_copy / "sft").mkdir()  # the warm-up checks' format: one judgment per line, with the judge's name
    (run_copy / "sft" / "check_judgments.jsonl").write_text("".join(json.dumps({"judge": "sft", **r}) + "\n" for r in held_out))
    return run_copy


def test_every_figure_writes_png_svg_and_its_data(trained_run):
    assert FIGURES.keys() == figures.FIGURE_DATA.keys()
    for name, draw in FIGURES.items():
        assert draw(trained_run) is not None, name
        for ext in ("png", "svg"):
            assert (trained_run / "figures" / f"{name}.{ext}").stat().st_size > 1000, (name, ext)
        data = figures.FIGURE_DATA[name](trained_run)
        assert (trained_run / "figures" / f"{name}.csv").read_text() == data.to_csv(index=False), name
    svg = trained_run / "figures" / "06_benchmark_bars.svg"
    first = svg.read_bytes()
    figures.plot_benchmark_bars(trained_run)
    assert svg.read_bytes() == first  # a rerun writes the same file: no date, ids salted by the figure's name
    table = tables.benchmark_table(trained_run)
    assert set(table["judge"]) == {"length", "random", "base", "par"} and len(table) == 12
    for ext in ("csv", "md"):
        assert (trained_run / "tables" / f"06_benchmarks.{ext}").is_file()


def test_score_shift_gathers_judgments_before_and_after_training(trained_run):
    assert list(figures.score_judgments(trained_run)) == [
        "after warm-up: sft, dev pairs (sft checks)", "before: base, held-out hh-rlhf", "after PAR: par, held-out hh-rlhf"]


def test_figures_skip_cleanly_when_their_inputs_are_missing(tmp_path, capsys):
    empty = Run.create("empty", load_config("smoke"), results_dir=tmp_path).dir
    for name, draw in {**FIGURES, "06_benchmarks": tables.benchmark_table}.items():
        assert draw(empty) is None, name
    assert capsys.readouterr().out.count("[figures] skipped") == len(FIGURES) + 1
    assert not (empty / "figures").exists() and not (empty / "tables").exists()


def test_paper_table_holds_the_papers_numbers_and_ours(trained_run):
    table = paper.paper_table(trained_run).set_index("row")
    claims = {c["id"]: {**c, "claim": c["claim"] + " (%)"} for c in yaml.safe_load(paper.REFERENCE_FILE.read_text())["claims"]}
    assert {c["value"] for c in claims.values() if c["value"] is not None} == {8.7, 4.7, 13.6}

    headline = table.loc[claims["judge_avg_v2"]["claim"]]
    assert headline["paper"] == 8.7 and headline["paper source"].startswith("v2, abstract")
    assert table.loc[claims["judge_avg_v1"]["claim"], "paper source"].startswith("v1, abstract")
    assert table.loc[claims["policy_avg"]["claim"], "paper"] == 13.6
    for unknown in ("judge_rewardbench", "judge_rmbench", "judge_accuracy_rewardbench", "judge_accuracy_rmbench"):
        row = table.loc[claims[unknown]["claim"]]
        assert row["paper"] is None or math.isnan(row["paper"])
        assert row["paper source"].startswith("empty: per-benchmark tables")

    acc = {(j, b): read_json(RunLayout(trained_run).eval_metrics(j, b))["acc"] for j in ("base", "par") for b in ("rewardbench", "rmbench")}
    gains = [100 * (acc[("par", b)] - acc[("base", b)]) / acc[("base", b)] for b in ("rewardbench", "rmbench")]
    assert headline["ours"] == round(sum(gains) / 2, 1)  # rounded as the paper prints its numbers
    assert table.loc[claims["judge_rmbench"]["claim"], "ours"] == round(gains[1], 1)
    assert "greedy readout" in headline["ours source"]  # the run states no other readout
    assert table.loc[claims["policy_avg"]["claim"], "ours source"].startswith("empty: no downstream")
    coverage = table.loc["setting: benchmarks", "ours"]
    assert "math missing" in coverage and "no RewardBench score" in coverage
    assert table.loc["setting: judge model", "ours"] == "smollm2-135m-instruct"
    markdown = (trained_run / "tables" / "06_paper_vs_ours.md").read_text()
    assert "| 8.7 | v2, abstract" in markdown and "|  | empty: per-benchmark tables" in markdown


def test_the_paper_row_is_honest_on_the_reference_run():
    """No relative improvement over a base judge that only ties; the v1 row the paper leaves without a
    reference stays empty; labels name what was measured; the caveat is in the table itself."""
    table = paper.paper_frame(REPO_ROOT / "results" / "reference-cpu").set_index("row")
    claims = {c["id"]: c["claim"] + " (%)" for c in yaml.safe_load(paper.REFERENCE_FILE.read_text())["claims"]}
    headline = table.loc[claims["judge_avg_v2"]]
    assert headline["ours"] is None and headline["ours source"].startswith("undefined: every greedy judgment of the base judge")
    assert table.loc[claims["judge_avg_v1"], "ours"] is None
    assert "does not say what its number is relative to" in table.loc[claims["judge_avg_v1"], "ours source"]
    assert "on LLMBar (5 of RewardBench's Chat Hard subsets)" in table.loc[claims["judge_accuracy_rewardbench"], "ours source"]
    assert table.loc[claims["judge_accuracy_rewardbench"], "ours"] == 53.8  # 53.75, as the paper prints
    assert table.loc["comparability", "ours source"].startswith("not comparable in size")
    results = figures.suite_metrics(REPO_ROOT / "results" / "reference-cpu")  # the expected readout gives the base judge scores
    expected = {(m["judge"], m["bench"]): m["expected"]["acc"] for m in results if "expected" in m}
    gains = [100 * (expected[("par", b)] - expected[("base", b)]) / expected[("base", b)] for b in ("rewardbench", "rmbench")]
    assert paper.relative_improvement(results, ["rewardbench", "rmbench"], "expected")[0] == pytest.approx(sum(gains) / 2)


@pytest.mark.parametrize("p_value, n_boot, text", [(0.0, 1000, "< 0.001"), (0.0009, 1000, "< 0.001"), (0.001, 1000, "0.001"),
                                                   (0.566, 1000, "0.566"), (0.0, 200, "< 0.005")])
def test_a_p_value_below_the_bootstraps_resolution_is_not_printed_as_zero(p_value, n_boot, text):
    assert p_text(p_value, n_boot) == text


def test_paper_table_without_evaluations_keeps_our_cells_empty(tmp_path):
    empty = Run.create("empty", load_config("smoke"), results_dir=tmp_path).dir
    table = paper.paper_table(empty)
    claim_rows = table[~table["row"].str.startswith("setting:") & (table["row"] != "comparability")]
    assert claim_rows["ours"].isna().all() and claim_rows["ours source"].str.startswith("empty:").all()
    assert claim_rows["paper"].dropna().tolist() == [8.7, 4.7, 13.6]


def test_figure_data_holds_the_numbers_drawn(trained_run):
    """Each CSV row is a bar, a matrix cell, a curve point or a histogram count, from the results files."""
    eval_dir = trained_run / "eval"
    bars = figures.benchmark_bars_data(trained_run)
    assert len(bars) == 12
    for row in bars.itertuples():
        stored = read_json(RunLayout(trained_run).eval_metrics(row.judge, row.bench))
        assert (row.acc, [row.ci95_low, row.ci95_high]) == (stored["acc"], stored["ci95"]["acc"])
    cells = figures.rmbench_matrices_data(trained_run)
    par = read_json(RunLayout(trained_run).eval_metrics("par", "rmbench"))
    chat = cells[(cells["judge"] == "par") & (cells["domain"] == "chat")]
    assert chat["share"].to_numpy().reshape(3, 3).tolist() == par["domains"]["chat"]["matrix"]
    assert (chat["chosen_style"].iloc[1], chat["rejected_style"].iloc[1]) == ("concise", "detailed")
    curves = figures.par_curves_data(trained_run)
    assert curves[curves["metric"] == "par/reward_mean"]["value"].tolist() == [0.25, 0.5, 0.75]
    votes = figures.votes_curve_data(trained_run)
    assert votes["votes"].tolist() == [1, 2] and votes["judge"].unique().tolist() == ["random"]
    counts = figures.score_shift_data(trained_run)
    held_out = read_jsonl_rows(eval_dir / "par__pairs-hh-rlhf.judgments.jsonl")
    label = "after PAR: par, held-out hh-rlhf"
    assert counts[counts["label"] == label]["judgments"].sum() == len(held_out)
    off_scale = counts[(counts["label"] == label) & (counts["score"] == "off the scale")]["judgments"].sum()
    assert off_scale == len(held_out)  # the stand-in "par" here is the length judge: characters, not a 1..10 score
    on_scale = counts[counts["score"].isin(range(1, 11))]
    assert on_scale["judgments"].sum() == 0  # neither stand-in (length, random) gives a score on the judge's scale


def read_jsonl_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_tables_are_saved_as_their_frames_give_them(trained_run):
    for name, build in summary.TABLES.items():
        table = build(trained_run)
        paths = tables.save_table(table, trained_run, name)
        assert [p.read_text() for p in paths] == list(tables.table_files(table).values())


def test_a_result_the_run_does_not_have_is_one_line_not_an_empty_output(capsys):
    show(None, "no votes curve in this run")
    show(pd.DataFrame(), "no paired differences")
    assert capsys.readouterr().out == "no votes curve in this run\nno paired differences\n"
    show(pd.DataFrame({"acc": [0.5]}), "never printed")
    assert "never printed" not in capsys.readouterr().out


def test_the_figures_notebook_on_a_run_without_training_says_what_is_absent_in_one_line(small_run, tmp_path):
    """Notebook prose follows the profile: the small run (stages 01 and 04 only) has no PAR training and
    no learning curve; each such section says so in one line, nothing empty, None or a bare string."""
    import papermill

    from patarm_kit.chain import KERNEL_NAME, LOCAL_KERNEL_MANAGER, NOTEBOOK_DIR

    run = Path(shutil.copytree(small_run, tmp_path / "run"))
    out = tmp_path / "06_figures.ipynb"
    papermill.execute_notebook(str(NOTEBOOK_DIR / "06_figures.ipynb"), str(out), parameters={"run_dir": str(run)},
                               kernel_name=KERNEL_NAME, cwd=str(NOTEBOOK_DIR), progress_bar=False,
                               kernel_manager_class=LOCAL_KERNEL_MANAGER)
    texts = [("".join(o.get("text", "")) or "".join(o.get("data", {}).get("text/plain", ""))).strip()
             for cell in json.loads(out.read_text())["cells"] if cell["cell_type"] == "code" for o in cell.get("outputs", [])]
    assert not [t for t in texts if t in ("None", "''") or "Empty DataFrame" in t or t.startswith("'")]
    assert "no PAR training recorded in this run (no par/metrics.jsonl)" in texts
    assert "no learning curve in this run (par.learning_curve_pairs unset, or PAR not trained)" in texts
    assert not [cell for cell in json.loads(out.read_text())["cells"] if cell["cell_type"] == "code"
                and "show(" in "".join(cell["source"]) and not cell.get("outputs")], "a section showed nothing"


def test_the_template_share_counts_the_format_warmups_sentences():
    """The reference run's warm-up and PAR judges write one of the `format` warm-up's three sentences almost
    always; the untrained judge never does; a hand-written evaluation is not a template."""
    from patarm_kit.training.sft import is_format_template

    assert is_format_template("Handles rat pellets well; good accuracy.") and not is_format_template("Mentions the cage.")
    shares = tables.template_frame(REPO_ROOT / "results" / "reference-cpu").set_index("judge")["template share (%)"]
    assert shares["base"] == 0.0 and shares["sft"] == 98.9 and shares["par"] == 99.3
