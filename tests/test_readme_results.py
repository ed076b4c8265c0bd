"""The README's results block is made from the committed reference run's SUMMARY.md, never by hand.

Refresh it after the reference run changes: `python -m patarm_kit.summary --update-readme README.md`.
"""

from patarm_kit.config import REPO_ROOT
from patarm_kit.summary import README_BLOCK, render_readme


def test_readme_results_block_is_the_reference_runs_summary():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert [match[2] for match in README_BLOCK.finditer(readme)] == ["results/reference-cpu"]
    assert readme == render_readme(readme, REPO_ROOT), (
        "README's results block differs from results/reference-cpu/SUMMARY.md: "
        "run `python -m patarm_kit.summary --update-readme README.md`")
