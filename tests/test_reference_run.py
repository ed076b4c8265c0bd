"""The committed reference run (results/reference-cpu) still checks out from its files alone.

Every metric is recomputed from the stored judgments with today's code, every judgment's score
re-parsed from its text, the tables, figure data and SUMMARY.md rebuilt and compared with the
committed files, every recorded file and data hash checked: a change to a scoring rule, the
parser or a table that would move a published number fails here.
"""

import json

import pytest

from patarm_kit.chain import NOTEBOOK_STAGES
from patarm_kit.config.loader import REPO_ROOT, load_config
from patarm_kit.report.figures import FIGURE_DATA
from patarm_kit.report.summary import TABLES
from patarm_kit.report.verify import recorded_outputs, verify_run
from patarm_kit.runs.layout import RunLayout

REFERENCE = REPO_ROOT / "results" / "reference-cpu"


@pytest.fixture(scope="module")
def report():
    return verify_run(REFERENCE)


def test_reference_run_verifies(report):
    assert report.ok, report.summary()
    config = load_config("cpu")
    # every judge on every bench, less pairwise on RM-Bench, plus the votes curve's file and one
    # learning-curve file per point (the warm-up and every saved PAR checkpoint)
    curve_points = 1 + config.par.max_steps // config.par.save_steps
    assert report.checked["metrics files"] == len(config.eval.judges) * len(config.eval.benches) + curve_points
    assert report.checked["data files"] >= 14
    assert report.checked["judgments re-parsed"] > 1000


def test_reference_run_has_its_summary_tables_and_figure_data_checked(report):
    """SUMMARY.md, both tables and every figure's data are rebuilt by verify, and recorded with every result file."""
    layout = RunLayout(REFERENCE)  # made before notebooks 05 and 06 swapped: its files keep their 05_ names
    generated = {"SUMMARY.md", *(layout.key(layout.table(name, ext)) for name in TABLES for ext in ("csv", "md")),
                 *(layout.key(layout.figure_data(name)) for name in FIGURE_DATA)}
    assert "tables/05_benchmarks.csv" in generated
    assert generated <= report.rebuilt, report.summary()
    recorded = recorded_outputs(json.loads((REFERENCE / "manifest.json").read_text()))
    results = {p.relative_to(REFERENCE).as_posix() for p in REFERENCE.glob("eval/*")}
    assert generated | results <= recorded.keys()


def test_reference_run_is_a_complete_cpu_run():
    manifest = json.loads((REFERENCE / "manifest.json").read_text())
    assert manifest["profile"] == "cpu" and manifest["finished"]
    stages = [stage for notebook in load_config("cpu").notebooks for stage in NOTEBOOK_STAGES[notebook]]
    assert all(manifest["stages"][name]["status"] == "done" for name in stages)
    for figure in ("05_par_curves", "05_benchmark_bars", "05_rmbench_matrices", "05_votes_curve", "05_score_shift"):
        assert (REFERENCE / "figures" / f"{figure}.png").stat().st_size > 10_000, figure
    config = load_config("cpu")
    assert f"SFT warm-up: {config.sft.max_steps} steps; PAR: {config.par.n_pairs} pairs" in (REFERENCE / "tables" / "05_paper_vs_ours.md").read_text()
    assert (REFERENCE / "figures" / "03_learning_curve.png").stat().st_size > 10_000
    # every metrics file counts its truncated inputs; every pointwise generative judge has both readouts
    for path in REFERENCE.glob("eval/*.json"):
        metrics = json.loads(path.read_text())
        assert "inputs_truncated" in metrics, path.name
        assert ("expected" in metrics) == (path.name.split("__")[0] in ("base", "sft", "par", "par-votes4")), path.name
