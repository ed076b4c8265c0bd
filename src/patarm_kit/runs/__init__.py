"""Room 2, runs: one run folder, its layout and its manifest.

layout (every path of a run, one object), run (create, open, record stages), files (safe writes,
hashes), env (versions, commit, machine), lock (one writer per run), notebooks (the stages each
chain notebook runs, and which executed notebooks are stale).
"""

__all__ = ["env", "files", "layout", "lock", "notebooks", "run"]
