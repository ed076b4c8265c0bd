"""The README's results blocks are made from the committed runs' SUMMARY.md files, never by hand.

Refresh it after the reference run changes: `python -m patarm_kit.report.summary --update-readme README.md`.
"""

from patarm_kit.config.loader import REPO_ROOT
from patarm_kit.report.summary import README_BLOCK, render_readme


def test_readme_results_blocks_are_the_committed_runs_summaries():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert [match[2] for match in README_BLOCK.finditer(readme)] == ["results/reference-cpu", "results/ablations-cpu", "results/downstream-cpu"]
    assert readme == render_readme(readme, REPO_ROOT), (
        "README's results blocks differ from the committed runs' SUMMARY.md: "
        "run `python -m patarm_kit.report.summary --update-readme README.md`")
