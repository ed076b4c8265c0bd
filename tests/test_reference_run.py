"""The committed reference run (results/reference-cpu) still checks out from its files alone.

Every metric is recomputed from the stored judgments with today's code and compared with the
committed metrics files, the stage tables and the data hashes: a change to a scoring rule that
would move a published number fails here.
"""

import json

from patarm_kit.config import REPO_ROOT, load_config
from patarm_kit.verify import verify_run

REFERENCE = REPO_ROOT / "results" / "reference-cpu"


def test_reference_run_verifies():
    report = verify_run(REFERENCE)
    assert report.ok, report.summary()
    judges, benches = load_config("cpu").eval.judges, load_config("cpu").eval.benches
    # every judge on every bench, less pairwise on RM-Bench, plus the votes curve's file
    assert report.checked["metrics files"] == len(judges) * len(benches)
    assert report.checked["data files"] >= 14


def test_reference_run_is_a_complete_cpu_run():
    manifest = json.loads((REFERENCE / "manifest.json").read_text())
    assert manifest["profile"] == "cpu" and manifest["finished"]
    assert all(manifest["stages"][name]["status"] == "done" for name in load_config("cpu").notebooks)
    for figure in ("05_par_curves", "05_benchmark_bars", "05_rmbench_matrices", "05_votes_curve", "05_score_shift"):
        assert (REFERENCE / "figures" / f"{figure}.png").stat().st_size > 10_000, figure
    assert (REFERENCE / "tables" / "05_paper_vs_ours.md").is_file()
