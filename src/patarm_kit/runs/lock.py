"""One writer per run: an exclusive advisory lock held by every command that writes into a run.

The lock is the operating system's (`fcntl.flock`) on a file beside the run folder,
`.<run-name>.writer`, so that creating a run is covered too: two chains started on one new run name
cannot both create it. The lock file names its holder (pid, start time, command); a second writer is
refused in one line naming them. A killed holder's lock is released by the OS; the next writer
takes it over and says so, and marks the records it left "running" as "interrupted". Only the
main process of a multi-process launch takes it: the other processes write through it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from patarm_kit.runs.env import is_main_process, now, process_alive
from patarm_kit.runs.files import RunError
from patarm_kit.runs.layout import RunLayout
from patarm_kit.runs.run import Run


def lock_path(run_dir: Path) -> Path:
    """The lock file of a run folder: beside it, so it exists before the run does."""
    run_dir = Path(run_dir).resolve()
    return run_dir.parent / f".{run_dir.name}.writer"


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def writer_lock(run_dir: Path | str) -> Iterator[None]:
    """Hold the run's writer lock for the block; refuse (RunError naming the holder) when another command holds it."""
    if not is_main_process():
        yield
        return
    path = lock_path(Path(run_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the whole block
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            raise RunError(f"{Path(run_dir)}: another command is writing this run (pid {holder.get('pid', '?')}, since "
                           f"{holder.get('started', '?')}: {holder.get('command', '?')}); wait for it to end") from None
        previous = _holder(path)
        if previous.get("pid") and previous["pid"] != os.getpid() and not process_alive(previous["pid"]):
            print(f"[run] {Path(run_dir)}: taking over the writer lock of pid {previous['pid']} "
                  f"({previous.get('command', '?')}, since {previous.get('started', '?')}), which no longer runs",
                  file=sys.stderr, flush=True)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "started": now(), "command": " ".join(sys.argv)[:300]}))
        handle.flush()
        if RunLayout(Path(run_dir)).manifest.is_file():
            for record in Run(Path(run_dir)).mark_interrupted():
                print(f"[run] {Path(run_dir).name}: {record} was left running by a stopped process; marked interrupted",
                      file=sys.stderr, flush=True)
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()  # a released lock names no holder; only a killed one leaves its name behind
    finally:
        handle.close()  # releases the lock
