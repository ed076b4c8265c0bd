"""Notebooks are evidence: an executed notebook that shows results its run's files no longer hold
(a stage made again after it ran) fails `verify` until the chain executes it again."""

import json
import shutil

from patarm_kit import stages
from patarm_kit.chain import run_chain
from patarm_kit.config.loader import REPO_ROOT
from patarm_kit.report import figures
from patarm_kit.report.verify import verify_run
from patarm_kit.runs import run as runs
from patarm_kit.runs.files import display_path
from patarm_kit.runs.notebooks import stale_notebooks
from patarm_kit.runs.run import Run


def test_a_stage_made_again_makes_its_notebook_stale_until_the_chain_executes_it_again(monkeypatch):
    copy = Run(shutil.copytree(REPO_ROOT / "results" / "reference-cpu", runs.RESULTS_DIR / "reference-cpu"))
    notebook = copy.layout.notebook("05_figures")  # made before the renumbering: today's 06_figures
    assert verify_run(copy.dir).ok
    stages.figures(copy, force=True)  # made again with the same files: the notebook still shows them
    assert verify_run(copy.dir).ok

    def retitled(fig, run_dir, name, data):  # drawn again otherwise (as after a change upstream of the stage)
        fig.suptitle("drawn again")
        return save_figure(fig, run_dir, name, data)

    save_figure = figures.save_figure
    with monkeypatch.context() as patched:
        patched.setattr(figures, "save_figure", retitled)
        stages.figures(copy, force=True)  # a stage re-run on its own, as `--force` from a command would
    assert not list(copy.layout.figures_dir.glob("06_*")) and not list(copy.layout.tables_dir.glob("06_*"))  # its era's names
    report = verify_run(copy.dir)
    assert [(d.file, d.field) for d in report.differences] == [("notebooks/05_figures.ipynb", "(notebook)")]
    assert "stale: stage figures was made again" in report.differences[0].detail
    before = notebook.read_bytes()

    run_chain("cpu", "reference-cpu", resume=True)  # every other notebook is done: only the stale one runs
    assert notebook.read_bytes() != before and stale_notebooks(copy.manifest()) == {}
    shown = "".join("".join(out.get("text", "")) for cell in json.loads(notebook.read_text())["cells"] for out in cell.get("outputs", []))
    assert f"OK {display_path(copy.dir)}:" in shown and "FAILED" not in shown  # its own verify cell passed while it ran
    record = copy.manifest()["notebooks"]["05_figures"]
    assert record["status"] == "done" and set(record["shows"]) == {"figures"}
    assert verify_run(copy.dir).ok


def test_the_committed_runs_notebooks_show_their_files():
    stale = {path.parent.name: stale_notebooks(json.loads(path.read_text()))
             for path in sorted((REPO_ROOT / "results").glob("*/manifest.json"))}
    assert {name: why for name, why in stale.items() if why} == {}
