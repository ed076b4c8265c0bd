"""Room 7, report: what a reader sees, rebuilt from the files.

figures and training_figures (plots), tables, paper (ours beside the paper's), summary
(SUMMARY.md and the run README block), verify and differences (every number rebuilt), show (what
a notebook cell shows when a run has no such result), export (results in a leaderboard's layout),
browse (a finished run's judgments item by item: `patarm-kit show`, notebook 07), noise (what an
executed notebook shows beside its results: stderr, warnings, bars at 0%, absolute paths).
"""

__all__ = ["browse", "differences", "export", "figures", "noise", "paper", "show", "summary", "tables", "training_figures", "verify"]
