"""Room 2, runs: one run folder, its layout and its manifest.

layout (every path of a run, one object), run (create, open, record stages), files (safe writes,
hashes), env (versions, commit, machine), lock (one writer per run).
"""

__all__ = ["env", "files", "layout", "lock", "run"]
