"""The chain's notebooks as a run records them: the library stages each runs, their names before the
renumbering, and whether an executed notebook still shows what its run's files hold.

A notebook displays the results of the stages it runs. A stage made again after its notebook ran (a
stage command with `--force`, say) leaves the executed notebook showing results the run no longer
holds: the notebook is stale until the chain executes it again (`patarm-kit run ... --resume` does),
and `verify` fails until then. A notebook's record keeps a mark of each stage it showed (`shows`);
a stage made again carries another mark. Notebooks recorded before marks existed are judged by time.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

Item = TypeVar("Item")

# The library stages each chain notebook runs (the chain will not re-run a done one without --force).
NOTEBOOK_STAGES = {
    "01_data_pairing": ("data",),
    "02_rubric_generation": ("preview",),
    "03_par_training": ("sft", "par", "par-variants", "learning-curve", "bt"),
    "04_benchmark_eval": ("eval",),
    "05_downstream_rlhf": ("policies", "downstream"),
    "06_figures": ("figures",),
}

# The environment variable naming the notebook the chain is executing (its kernel inherits it).
EXECUTING = "PATARM_EXECUTING_NOTEBOOK"


def progress(items: Iterable[Item], desc: str, unit: str) -> Iterable[Item]:
    """The kit's progress bar for long work.

    In Jupyter a widget. In a notebook the chain executes, a text bar on stdout, redrawn at most
    every 30 s: the saved notebook keeps a widget at its first frame ("0%") whatever happened after,
    and a text bar's last frame (100%, the time taken) instead.
    """
    if os.environ.get(EXECUTING):
        from tqdm.std import tqdm

        return tqdm(items, desc=desc, unit=unit, file=sys.stdout, mininterval=30)
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit=unit)

# Notebooks 05 and 06 swapped places (figures last, so the file order is the run order). Runs made
# before name them as they were; the chain runs today's notebook for an old name, into the old file.
RENAMED_NOTEBOOKS = {"05_figures": "06_figures", "06_downstream_rlhf": "05_downstream_rlhf"}


def current_name(name: str) -> str:
    """A notebook's name today (an older run's `05_figures` is `06_figures`)."""
    return RENAMED_NOTEBOOKS.get(name, name)


def stage_mark(entry: Mapping[str, Any]) -> str:
    """What tells one making of a stage from another: the sha256 of its recorded outputs (the same
    files again are the same results), else its finish time."""
    if entry.get("outputs"):
        return hashlib.sha256(json.dumps(entry["outputs"], sort_keys=True).encode()).hexdigest()[:16]
    return str(entry.get("finished"))


def shown_marks(manifest: Mapping[str, Any], notebook: str) -> dict[str, str]:
    """The marks of the finished stages `notebook` runs: what its executed copy shows (kept in its record)."""
    stages = manifest.get("stages", {})
    return {stage: stage_mark(stages[stage]) for stage in NOTEBOOK_STAGES.get(current_name(notebook), ())
            if stages.get(stage, {}).get("status") == "done"}


def stale_notebooks(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Executed notebooks that show results their run's files no longer hold: name -> why."""
    stale = {}
    for name, record in manifest.get("notebooks", {}).items():
        if record.get("status") != "done":
            continue
        shows = record.get("shows")
        for stage, mark in shown_marks(manifest, name).items():
            entry = manifest["stages"][stage]
            if shows is None:  # recorded before marks: a stage finished after the notebook was made again since
                changed = bool(entry.get("finished") and record.get("finished")) and entry["finished"] > record["finished"]
            else:
                changed = shows.get(stage) != mark
            if changed:
                stale[name] = f"stage {stage} was made again ({entry.get('finished')}) after the notebook ran"
                break
    return stale
